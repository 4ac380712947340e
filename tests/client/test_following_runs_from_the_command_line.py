"""`crucible` against the real stack (daphne, Celery worker, runsc): what it prints and the code it
exits with for a run that prints, fails, times out or is cancelled, and a follow that survives a
dropped websocket."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import threading
import time

import pytest

from tests.client.proxy import DroppingProxy

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ANSI = "\x1b["


def read_line_until(proc: subprocess.Popen, wanted: str, timeout: float = 30) -> list[str]:
    """Lines of proc's stdout up to and including `wanted` (read the rest with `finish`: lines
    after `wanted` may sit in proc.stdout's buffer, where communicate() would not see them)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if lines[-1] == wanted:
            return lines
    proc.kill()
    pytest.fail(f"no {wanted!r} on stdout: {lines}\nstderr: {proc.stderr.read()}")


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    """The rest of proc's stdout and its stderr, once it exited."""
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        out = proc.stdout.read()
        err = proc.stderr.read()
        proc.wait()
    finally:
        timer.cancel()
    return out, err


def test_a_run_that_prints_streams_its_output_and_exits_0(cli, program):
    path = program("import sys\nprint('hello from the sandbox')\nprint('to stderr', file=sys.stderr)\n")

    done = cli("run", path, "--follow")

    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello from the sandbox\n"
    assert "to stderr\n" in done.stderr
    assert re.search(r"crucible: run \d+ succeeded after [\d.]+s\n$", done.stderr), done.stderr
    assert ANSI not in done.stderr + done.stdout  # not a terminal: no colours, no status line


def test_a_failing_run_exits_with_the_programs_exit_code(cli, program):
    path = program("import sys\nprint('bad input', file=sys.stderr, end='')\nsys.exit(3)\n")

    done = cli("run", path, "--follow")

    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    assert re.search(r"bad input\ncrucible: run \d+ failed after [\d.]+s: exit code 3\n$", done.stderr), done.stderr


def test_a_run_over_its_wall_time_exits_111_and_says_so(cli, program):
    path = program("import time\nprint('looping', flush=True)\nwhile True:\n    time.sleep(0.01)\n")

    done = cli("run", path, "--wall", "1", "--follow")

    assert done.returncode == 111, done.stderr
    assert done.stdout == "looping\n"
    assert re.search(r"run \d+ failed \(timeout\).*\[exit 111\]", done.stderr), done.stderr


def test_a_cancelled_run_ends_its_follower_with_110(cli, program):
    submitted = cli("run", program("import time\nprint('started', flush=True)\ntime.sleep(60)\n"))
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    assert run_id.isdigit(), submitted.stdout  # a script's `RUN=$(crucible run x.py)`

    follower = cli.popen("follow", run_id)
    read_line_until(follower, "started")
    cancelled = cli("cancel", run_id)
    out, err = finish(follower)

    assert cancelled.returncode == 0, cancelled.stderr
    assert f"run {run_id} is being cancelled" in cancelled.stderr
    assert follower.returncode == 110, err
    assert f"run {run_id} cancelled (cancelled)" in err
    again = cli("cancel", run_id)
    assert again.returncode == 6, again.stderr  # 409: it has ended already
    assert "crucible: " in again.stderr


def test_json_logs_list_and_rerun_report_the_same_run(cli, program):
    path = program("import sys\nprint(sys.argv[1:])\nprint(input())\n")
    stdin = program("a line of input\n", name="input.txt")

    created = json.loads(cli("run", path, "--arg=--epochs", "--stdin", stdin, "--json", "--", "3", "x y").stdout)
    run_id = str(created["id"])
    followed = cli("follow", run_id, "--json")
    logs = cli("logs", run_id)
    downloaded = cli("logs", run_id, "--download")
    listed = cli("list", "--status", "succeeded", "--json")
    rerun = cli("rerun", run_id, "--follow")

    assert created["status"] == "queued"
    events = [json.loads(line) for line in followed.stdout.splitlines()]
    assert events[-1]["type"] == "status" and events[-1]["status"] == "succeeded", followed.stderr
    assert followed.returncode == 0
    assert logs.stdout == "['--epochs', '3', 'x y']\na line of input\n"
    assert downloaded.returncode == 0, downloaded.stderr
    assert (cli.home / f"run-{run_id}-stdout.log").read_text() == logs.stdout
    assert int(run_id) in [run["id"] for run in json.loads(listed.stdout)]
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout == logs.stdout


def test_a_follow_resumes_after_the_websocket_drops_without_gap_or_duplicate(cli, stack, program):
    proxy = DroppingProxy(stack.host, stack.port)
    try:
        count = 60
        code = f"import time\nfor i in range({count}):\n    print(i, flush=True)\n    time.sleep(0.05)\n"
        run_id = cli("run", program(code)).stdout.strip()
        cli.env["CRUCIBLE_URL"] = proxy.url

        follower = cli.popen("follow", run_id)
        seen = read_line_until(follower, "10")
        assert proxy.drop_all() >= 2  # the websocket, both sides
        out, err = finish(follower)
    finally:
        proxy.close()

    assert follower.returncode == 0, err
    assert seen + out.splitlines() == [str(i) for i in range(count)]
    assert "reconnecting" in err
    sockets = [line for line in proxy.request_lines if line.startswith(f"GET /ws/runs/{run_id}/")]
    assert len(sockets) >= 2, proxy.request_lines
    resumed_at = int(re.search(r"stdout=(\d+)", sockets[-1]).group(1))
    assert resumed_at >= len("0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n"), sockets


def test_on_a_terminal_it_shows_a_status_line_in_colour(cli, program):
    path = program("import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.6)\n")
    leader, follower_tty = pty.openpty()
    try:
        proc = subprocess.Popen(
            cli.argv("run", path, "--follow"), stdout=follower_tty, stderr=follower_tty, env=cli.env
        )
        os.close(follower_tty)
        screen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the command exited and closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        proc.wait(timeout=30)
    finally:
        os.close(leader)
    text = screen.decode("utf-8", "replace")
    lines = rendered(text)

    assert proc.returncode == 0, text
    assert re.search(r"running \d+\.\ds", text), text  # the status line: elapsed on the server's clock
    assert "\x1b[32m" in text  # green: succeeded
    assert re.fullmatch(r"crucible: run \d+ queued: http://\S+", lines[0]), lines
    assert lines[1:4] == ["0", "1", "2"], lines  # the status line never splits or stays in the output
    assert re.fullmatch(r"crucible: run \d+ succeeded after [\d.]+s", lines[-1]), lines


def rendered(screen: str) -> list[str]:
    """The lines a terminal shows for `screen`: \\r returns, ESC[K erases to the end, other escapes
    only colour. (The program's lines and ours, with the status line's drawings erased.)"""
    lines, line, col = [], [], 0
    for token in re.findall(r"\x1b\[[0-9;]*[A-Za-z]|\r|\n|[^\x1b\r\n]", screen):
        if token == "\r":
            col = 0
        elif token == "\n":
            lines.append("".join(line))
            line, col = [], 0
        elif token == "\x1b[K":
            del line[col:]
        elif token.startswith("\x1b["):
            continue
        else:
            line[col : col + 1] = [token]
            col += 1
    if line:
        lines.append("".join(line))
    return [x for x in lines if x]


def test_a_directory_runs_as_a_project_from_its_entry_point(cli, tmp_path):
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "__init__.py").write_text("GREETING = 'hello from a package'\n")
    (project / "app.py").write_text("import os, pkg\nprint(pkg.GREETING)\nprint(sorted(os.listdir('.')))\n")
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")

    done = cli("run", str(project), "--entry", "app.py", "--follow")
    missing = cli("run", str(project), "--follow")  # no main.py in it

    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello from a package\n['app.py', 'pkg']\n"
    assert missing.returncode == 2
    assert "main.py is not in" in missing.stderr and "--entry" in missing.stderr


def test_a_limit_over_the_servers_maximum_exits_2_with_the_servers_reason(cli, program):
    done = cli("run", program("print(1)\n"), "--wall", "100000", "--follow")

    assert done.returncode == 2
    assert re.search(r"crucible: wall_seconds: .*\d", done.stderr), done.stderr
    assert done.stdout == ""


def test_following_a_run_that_is_not_yours_exits_4(cli):
    done = cli("follow", "999999")

    assert done.returncode == 4, done.stderr
    assert "no such run, or not one you may see" in done.stderr


def test_at_the_concurrent_quota_a_run_exits_5_unless_it_may_queue(cli, e2e_user, program):
    from django.contrib.auth import get_user_model

    from evaluations.models import QuotaOverride

    user = get_user_model().objects.get(username=e2e_user.username)
    QuotaOverride.objects.filter(user=user).update(concurrent_runs=1)
    busy = cli("run", program("import time\ntime.sleep(2)\n", name="busy.py"))
    assert busy.returncode == 0, busy.stderr

    refused = cli("run", program("print('refused')\n"))
    queued = cli("run", program("print('queued')\n"), "--queue", "--json")

    assert refused.returncode == 5, refused.stderr
    assert "concurrent" in refused.stderr
    assert queued.returncode == 0, queued.stderr
    assert json.loads(queued.stdout)["status"] == "queued"
    # When it starts is the server's scheduling (tests/evaluations/batches): not waited for here.
    assert cli("cancel", str(json.loads(queued.stdout)["id"])).returncode in (0, 6)


def test_a_callback_url_reaches_the_server_which_wants_a_webhook_secret_first(cli, program):
    done = cli("run", program("print(1)\n"), "--callback", "https://example.org/hook")

    assert done.returncode == 2, done.stderr
    assert re.search(r"crucible: callback_url: .*secret", done.stderr), done.stderr


def test_the_python_client_follows_a_run_with_typed_frozen_results(stack, e2e_user):
    import dataclasses

    import crucible

    with crucible.Client(stack.base_url, e2e_user.token) as client:
        run = client.submit(code="import sys\nprint('out')\nprint('err', file=sys.stderr)\n", name="typed")
        events = list(client.follow(run.id))
        done = client.run(run.id)
        listed = next(client.runs(status="succeeded"))

    assert isinstance(run, crucible.Run) and run.status == "queued"
    chunks = [e for e in events if isinstance(e, crucible.Output)]
    output = {s: b"".join(e.data for e in chunks if e.stream == s) for s in ("stdout", "stderr")}
    assert output == {"stdout": b"out\n", "stderr": b"err\n"}
    assert isinstance(events[-1], crucible.Status) and events[-1].status == "succeeded"
    assert (done.stdout, done.exit_code, done.limits.wall_seconds) == (b"out\n", 0, 10.0)
    assert isinstance(listed, crucible.RunSummary) and listed.id == run.id
    with pytest.raises(dataclasses.FrozenInstanceError):
        done.status = "failed"
