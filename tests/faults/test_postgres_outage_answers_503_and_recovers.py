"""PostgreSQL stopped (pg_ctl stop -m fast) for 10 s while a run runs: meanwhile the API answers
503 with a JSON message (never 500) to reads and submissions and creates nothing; once the
database is back everything recovers by itself, and the run, whose code succeeded during the
outage, ends succeeded with its full output."""

from __future__ import annotations

import time

import pytest

from tests.faults.support import program

pytestmark = pytest.mark.faults

OUTAGE_SECONDS = 10


def test_the_api_answers_503_while_the_database_is_down_and_the_run_ends_truthfully(faults):
    faults.stack(workers=1)
    run_id = faults.api.submit(
        program('import time\nprint("start", flush=True)\ntime.sleep(4)\nprint("end")\n'), wall=10
    )
    faults.api.wait_output(run_id, "start")

    faults.api.outage = True
    faults.pg.stop(mode="fast")
    try:
        answers = []
        until = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < until:
            answers.append(faults.api.get(f"/api/v1/runs/{run_id}/"))
            answers.append(faults.api.get("/api/v1/runs/"))
            answers.append(faults.api.submit_request(program('print("during the outage")\n')))
            time.sleep(0.5)
    finally:
        faults.pg.start()

    print(f"{len(answers)} answers during the outage, e.g. {answers[0].status_code} {answers[0].text}")
    for resp in answers:
        assert resp.status_code == 503, f"{resp.request.method} {resp.url}: {resp.status_code} {resp.text[:300]}"
        assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
        detail = resp.json().get("detail")
        assert isinstance(detail, str) and detail, resp.text

    # The outage lasts until the web has noticed the database is back: one more 503 may come then.
    recovered = faults.api.wait(run_id, lambda run: True, timeout=15, what="the API did not recover")
    faults.api.outage = False
    assert recovered["id"] == run_id
    run = faults.api.wait(run_id, timeout=60)
    assert (run["status"], run["exit_code"], run["stdout"]) == ("succeeded", 0, "start\nend\n"), run
    assert [row["id"] for row in faults.sql("SELECT id FROM evaluations_run")] == [run_id], "a 503 created a run"
    faults.check_end_state()
