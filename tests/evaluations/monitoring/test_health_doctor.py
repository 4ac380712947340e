"""`manage.py doctor`: one line per readiness check (OK, or FAIL with what to do), then a sandbox
really started on this host unless --skip-sandbox; the exit code is 1 when a line says FAIL."""

from __future__ import annotations

import io
import os
import subprocess

import pytest
from django.core.management import call_command

from evaluations.monitoring.health import HINTS
from tests.e2e.conftest import database_url_for_subprocesses
from tests.evaluations.monitoring.health_support import READINESS_CHECKS, beat
from tests.support.stack import REPO_ROOT, VENV_BIN

pytestmark = pytest.mark.django_db(transaction=True)  # the checks read in threads of their own


def doctor(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("doctor", *args, stdout=out)
    return out.getvalue().splitlines()


def test_doctor_prints_an_ok_line_per_check_and_ready_when_a_worker_beats() -> None:
    beat()

    lines = doctor("--skip-sandbox")

    assert [line.split()[:2] for line in lines[:-1]] == [["OK", name] for name in READINESS_CHECKS]
    assert lines[-1] == "ready"


def test_doctor_starts_a_sandbox_on_this_host_unless_told_not_to() -> None:
    beat()

    lines = doctor()

    local = [line for line in lines[:-1] if line.split()[1].startswith("local_")]
    assert [line.split()[:2] for line in local][-1] == ["OK", "local_run"], lines
    assert "print(1) -> succeeded" in local[-1]
    assert all(line.startswith("OK") for line in lines[:-1]), lines
    assert lines[-1] == "ready"


def test_doctor_says_what_failed_and_what_to_do_and_exits_1() -> None:
    # A real `manage.py doctor`, for its exit code: no worker ever started, and the broker's Redis
    # is a closed port (with a password, which must not be printed).
    env = {
        **os.environ,
        "CRUCIBLE_DATABASE_URL": database_url_for_subprocesses(),
        "CRUCIBLE_REDIS_URL": "redis://:s3cret-redis-password@127.0.0.1:1/0",
    }
    done = subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", "doctor", "--skip-sandbox"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1, done.stdout + done.stderr
    lines = {line.split()[1]: line for line in done.stdout.splitlines()}
    assert lines["database"].startswith("OK    database")
    assert lines["redis_broker"].startswith("FAIL  redis_broker         ConnectionError: connection refused (")
    assert lines["redis_broker"].endswith(f"-> {HINTS['redis_broker']}")
    assert "no worker has ever started" in lines["workers"]
    assert "-> start a worker (`celery -A crucible_site worker -Q runs`, or `make run`)" in lines["workers"]
    assert lines["sandbox"].startswith("FAIL  sandbox")
    assert "not ready: redis_broker, redis_channel_layer, redis_cache, workers, sandbox failed" in done.stderr
    assert "s3cret" not in done.stdout + done.stderr
