"""After a real run (daphne + worker + runsc), what the processes wrote is readable by its owner only."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SANDBOX_UID = 65534


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def _modes_while_running(state_dir: Path, timeout: float = 20.0) -> dict[str, tuple[str, int, int]]:
    """Modes, owners and groups in the run's work dir, read while its sandbox runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for main in state_dir.glob("*/code/main.py"):
            workdir = main.parent.parent
            try:
                # A pooled sandbox's run has no stdin file: its stdin comes on a pipe (sandbox/pool.py).
                paths = [workdir, workdir / "code", main, workdir / "config.json"]
                paths += [workdir / "stdin"] if (workdir / "stdin").exists() else []
                return {
                    str(p.relative_to(workdir)) if p != workdir else ".": (_mode(p), p.stat().st_uid, p.stat().st_gid)
                    for p in paths
                }
            except FileNotFoundError:
                continue  # a warm launcher's or an ending run's: look again
        time.sleep(0.05)
    raise AssertionError(f"no run's work dir appeared under {state_dir}")


def test_work_dirs_code_stdin_bundle_and_database_are_private_after_a_run(stack, e2e_user, wait_for_run):
    from django.conf import settings
    from django.db import connection

    started = time.time()
    api = requests.Session()
    api.headers.update(e2e_user.api_headers)
    code = "import sys, time\nprint(sys.stdin.read())\ntime.sleep(3)\n"
    resp = api.post(stack.url("/api/v1/submissions/"), json={"code": code, "stdin": "private input"}, timeout=10)
    assert resp.status_code == 201, resp.text

    during = _modes_while_running(Path(settings.CRUCIBLE_SANDBOX_STATE_DIR))
    run = wait_for_run(api, resp.json()["id"])

    assert (run["status"], run["stdout"]) == ("succeeded", "private input\n"), f"{run}\n{stack.logs()}"
    expected = {
        ".": ("0o700", 0, 0),
        # The sandbox's user reads its code through its group, inside a work dir only root enters.
        "code": ("0o750", 0, SANDBOX_UID),
        "code/main.py": ("0o640", 0, SANDBOX_UID),
        "stdin": ("0o600", 0, 0),
        "config.json": ("0o600", 0, 0),
    }
    assert during == {k: v for k, v in expected.items() if k in during} and len(during) >= 4, during
    if connection.vendor == "sqlite":  # run output (the log store) lives in the database
        database = Path(connection.settings_dict["NAME"])
        files = list(database.parent.glob(database.name + "*"))
        assert {p.name: _mode(p) for p in files} == {p.name: "0o600" for p in files}
    # Whatever else the web and the worker wrote in the var dir meanwhile (metrics, sandbox state...).
    var_dir = Path(settings.VAR_DIR)
    loose = {}
    for path in var_dir.rglob("*"):
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue  # gone meanwhile
        if st.st_mtime >= started and not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
            loose[str(path.relative_to(var_dir))] = oct(stat.S_IMODE(st.st_mode))
    assert loose == {}, f"web {stack.web.pid}, worker {stack.worker.pid}, pytest {os.getpid()}"
