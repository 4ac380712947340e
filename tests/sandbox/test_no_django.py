"""The sandbox package is pure Python: importing any of it must never import Django."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SANDBOX_DIR = REPO_ROOT / "sandbox"

IMPORT_CHECK = (
    "import sandbox, sandbox.runsc, sandbox.images, sandbox.cgroups, sandbox.__main__, sys; "
    "import sandbox.docker, sandbox.docker.engine, sandbox.docker.daemon; "
    "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')); "
    "assert not bad, bad"
)
DJANGO_IMPORT = re.compile(r"^\s*(?:import\s+django\b|from\s+django\b)|import_module\(\s*['\"]django", re.M)


def test_importing_every_sandbox_module_does_not_import_django() -> None:
    # A settings module in the environment must not tempt anything into configuring Django.
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "crucible_site.settings"}
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_the_sandbox_sources_contain_no_django_import() -> None:
    sources = sorted(SANDBOX_DIR.rglob("*.py"))
    assert len(sources) >= 6, sources
    offenders = [
        f"{path.relative_to(REPO_ROOT)}: {m.group(0).strip()}"
        for path in sources
        for m in DJANGO_IMPORT.finditer(path.read_text())
    ]
    assert offenders == []


def test_the_engine_registry_names_no_django_module() -> None:
    from sandbox import engine

    assert all("django" not in target for target in engine._ENGINES.values())
