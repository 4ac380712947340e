"""`python -m sandbox run`: a .py file or a project archive, --entry, --stdin-file, argv after --, --engine."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.__main__ import build_parser, main

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def work() -> Iterator[Path]:
    # World-searchable: the subprocess engine runs code as an unprivileged uid when we are root.
    path = Path(tempfile.mkdtemp(prefix="crucible-pytest-cli-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def project_zip(path: Path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("project/app.py", "import sys\nfrom pkg import m\nprint(m.X, sys.argv[1:], sys.stdin.read())")
        z.writestr("project/pkg/__init__.py", "")
        z.writestr("project/pkg/m.py", "X = 42")
    path.write_bytes(buf.getvalue())
    return path


def cli(work: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", "--state-dir", str(work / "state"), *args],
        cwd=REPO_ROOT,
        input=stdin,
        capture_output=True,
        timeout=60,
    )


def test_runsc_is_the_default_engine() -> None:
    assert build_parser().parse_args(["run", "x.py"]).engine == "runsc"
    assert build_parser().parse_args(["--engine", "subprocess", "run", "x.py"]).engine == "subprocess"
    assert build_parser().parse_args(["run", "--engine", "subprocess", "x.py"]).engine == "subprocess"


def test_it_runs_a_python_file_with_argv_after_the_double_dash(work: Path) -> None:
    script = work / "hello.py"
    script.write_text("import sys\nprint(sys.argv[1:])")
    proc = cli(work, "run", "--engine", "subprocess", str(script), "--", "-x", "--flag", "y z")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"['-x', '--flag', 'y z']\n"
    assert b"not a sandbox" in proc.stderr  # the subprocess engine always says so


def test_it_runs_a_zip_project_with_an_entry_point_stdin_and_argv(work: Path) -> None:
    archive = project_zip(work / "project.zip")
    (work / "in.txt").write_bytes(b"from a file")
    proc = cli(
        work,
        "--engine",
        "subprocess",
        "run",
        str(archive),
        "--entry",
        "app.py",
        "--stdin-file",
        str(work / "in.txt"),
        "--",
        "a",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"42 ['a'] from a file\n"


def test_stdin_file_dash_reads_the_commands_own_stdin(work: Path) -> None:
    archive = project_zip(work / "project.zip")
    proc = cli(
        work, "run", "--engine", "subprocess", "--entry", "app.py", "--stdin-file", "-", str(archive), stdin=b"piped"
    )
    assert proc.stdout == b"42 [] piped\n", proc.stderr


def test_a_missing_entry_point_lists_the_projects_scripts(work: Path) -> None:
    archive = project_zip(work / "project.zip")
    proc = cli(work, "run", "--engine", "subprocess", str(archive))
    assert proc.returncode == 2
    assert b"'main.py' is not in project.zip" in proc.stderr
    assert b"app.py, pkg/__init__.py, pkg/m.py" in proc.stderr


def test_an_unsafe_archive_is_refused_naming_the_entry(work: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("main.py", "print(1)")
        z.writestr("../../etc/cron.d/evil", "* * * * * root rm -rf /")
    (work / "evil.zip").write_bytes(buf.getvalue())
    proc = cli(work, "run", "--engine", "subprocess", str(work / "evil.zip"))
    assert proc.returncode == 2
    assert b"'../../etc/cron.d/evil'" in proc.stderr and b"'..'" in proc.stderr


def test_json_output_includes_peak_processes(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = work / "main.py"
    script.write_text("print('hi')")
    code = main(["--state-dir", str(work / "state"), "--engine", "subprocess", "run", "--json", str(script)])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stdout"]["data"] == "hi\n"
    assert data["engine"] == "subprocess"
    assert "peak_processes" in data["usage"]


def test_it_runs_a_tar_gz_project_in_runsc(work: Path, engine) -> None:  # engine: runsc is set up
    project = work / "project"
    project.mkdir()
    (project / "main.py").write_text("import sys, os\nprint(sys.argv[1:], os.getuid())")
    subprocess.run(["tar", "czf", str(work / "p.tar.gz"), "-C", str(work), "project"], check=True)
    proc = cli(
        work,
        "--images-dir",
        str(engine.config.images_dir),
        "run",
        str(work / "p.tar.gz"),
        "--",
        "x",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"['x'] 65534\n"
    assert b"[succeeded]" in proc.stderr
