"""A worker stopped mid-run (SIGTERM to its whole process group, as systemd or Ctrl-C does) takes no
more runs, lets running ones finish within the grace or ends them truthfully, leaves queued ones
queued for the next worker, and leaves no sandbox behind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

GRACE = 3
SHORT = 'import time\nprint("begin", flush=True)\ntime.sleep(1.5)\nprint("end")\n'
LONG = 'import time\nprint("begin", flush=True)\ntime.sleep(30)\nprint("end")\n'
TERMINAL = {"succeeded", "failed", "error", "cancelled"}


def wait_status(session: requests.Session, url: str, wanted: set[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        data = session.get(url, timeout=10).json()
        if data["status"] in wanted:
            return data
        assert time.monotonic() < deadline, f"still {data['status']}, wanted {wanted}"
        time.sleep(0.05)


@pytest.fixture
def env(stack_env) -> dict[str, str]:
    import redis

    # Messages left in this Redis database by earlier sessions must not reach our worker.
    redis.Redis.from_url(stack_env["CRUCIBLE_REDIS_URL"], socket_connect_timeout=2).flushdb()
    return {**stack_env, "CRUCIBLE_STOP_GRACE_SECONDS": str(GRACE)}


def submit(session: requests.Session, stack: Stack, code: str) -> int:
    resp = session.post(stack.url("/api/v1/submissions/"), json={"code": code, "wall_seconds": 40}, timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_a_stopping_worker_finishes_short_runs_ends_long_ones_and_keeps_queued_ones(env, e2e_user, tmp_path):
    from evaluations.models import Run

    session = requests.Session()
    session.headers.update(e2e_user.api_headers)
    with Stack(env, log_dir=tmp_path / "first", concurrency=2) as first:
        short, long = submit(session, first, SHORT), submit(session, first, LONG)
        for run_id in (short, long):
            wait_status(session, first.url(f"/api/v1/runs/{run_id}/"), {"running"})
        queued = submit(session, first, SHORT)  # both slots are busy: it waits
        time.sleep(0.3)
        started = time.monotonic()
        first.stop()
        stopped_after = time.monotonic() - started

    assert stopped_after < GRACE + 10, first.logs()
    runs = {run.pk: run for run in Run.objects.filter(pk__in=[short, long, queued])}
    assert (runs[short].status, runs[short].exit_code) == ("succeeded", 0), (runs[short].detail, first.logs())
    assert (runs[long].status, runs[long].reason) == ("error", "worker_lost"), first.logs()
    assert "worker was stopped" in runs[long].detail and f"{GRACE} s" in runs[long].detail
    assert runs[queued].status == "queued" and runs[queued].started_at is None
    state_dir = Path(env["CRUCIBLE_SANDBOX_STATE_DIR"])
    assert not list(state_dir.glob("crucible-*")), "a sandbox was left behind"

    with Stack(env, log_dir=tmp_path / "second", reconciler=True) as second:
        data = wait_status(session, second.url(f"/api/v1/runs/{queued}/"), TERMINAL)
        long_data = session.get(second.url(f"/api/v1/runs/{long}/"), timeout=10).json()
    assert (data["status"], data["stdout"]) == ("succeeded", "begin\nend\n"), data
    assert long_data["stdout"] == "begin\n"  # what it printed before the stop is kept
