"""A worker stopped mid-run (SIGTERM to its whole process group, as systemd or Ctrl-C does) puts
the run back in the queue, leaves no sandbox behind, and the next worker runs it to the end."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CODE = 'import time\nprint("begin", flush=True)\ntime.sleep(3)\nprint("end")\n'


def wait_status(session: requests.Session, url: str, wanted: set[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        data = session.get(url, timeout=10).json()
        if data["status"] in wanted:
            return data
        assert time.monotonic() < deadline, f"still {data['status']}, wanted {wanted}"
        time.sleep(0.05)


def test_a_run_cut_short_by_a_stopping_worker_is_queued_again_and_then_finishes(stack_env, e2e_user, tmp_path):
    from evaluations.models import Run

    session = requests.Session()
    session.headers.update(e2e_user.api_headers)
    with Stack(stack_env, log_dir=tmp_path / "first") as first:
        resp = session.post(first.url("/api/v1/submissions/"), json={"code": CODE, "wall_seconds": 20}, timeout=10)
        assert resp.status_code == 201, resp.text
        run_id = resp.json()["id"]
        wait_status(session, first.url(f"/api/v1/runs/{run_id}/"), {"running"})
        time.sleep(0.5)
        first.stop()

    run = Run.objects.get(pk=run_id)
    assert (run.status, run.started_at) == ("queued", None), (run.status, run.reason, run.detail)
    state_dir = Path(stack_env["CRUCIBLE_SANDBOX_STATE_DIR"])
    assert not list(state_dir.glob("crucible-*")), "a sandbox was left behind"

    with Stack(stack_env, log_dir=tmp_path / "second") as second:
        data = wait_status(
            session, second.url(f"/api/v1/runs/{run_id}/"), {"succeeded", "failed", "error", "cancelled"}
        )
    assert (data["status"], data["stdout"]) == ("succeeded", "begin\nend\n"), data
