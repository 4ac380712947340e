"""The web and the worker's pool children borrow PostgreSQL connections from pools: requests and
runs reuse the connections held instead of opening one each, and after a PostgreSQL restart the
dead ones are replaced by themselves. Here for the faults' private PostgreSQL, which it restarts."""

from __future__ import annotations

import pytest

from tests.faults.support import program

pytestmark = pytest.mark.faults

BACKENDS = "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()"
SESSIONS = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
RUNS = 8


def web_backends(faults) -> set[int]:
    return {row["pid"] for row in faults.sql(BACKENDS, "crucible-web")}


def worker_backends(faults) -> set[int]:
    return {row["pid"] for row in faults.sql(BACKENDS, "crucible-worker")}


def test_requests_reuse_the_webs_pooled_connections_across_a_restart(faults):
    faults.stack(workers=0)
    for _ in range(3):
        assert faults.api.get("/api/v1/runs/").status_code == 200
    held = web_backends(faults)
    assert held, "no connection of the web stays open between requests"

    for _ in range(40):
        assert faults.api.get("/api/v1/runs/").status_code == 200
    after = web_backends(faults)
    assert held & after, f"40 requests replaced every pooled connection: {held} then {after}"
    assert len(after) <= 10, after

    faults.pg.stop(mode="fast")
    faults.pg.start()
    # The first borrow after the restart may find a dead connection and answer 503 (the pool pauses
    # before trying the next); that answer checks the whole pool, so every later request is fine.
    faults.api.outage = True
    first = faults.api.get("/api/v1/runs/").status_code
    faults.api.outage = False
    assert first in (200, 503), first
    answers = [faults.api.get("/api/v1/runs/").status_code for _ in range(5)]
    assert answers == [200] * 5, answers
    assert not web_backends(faults) & held, "connections from before the restart cannot be alive"
    faults.check_end_state()


def test_runs_reuse_the_workers_pooled_connections_across_a_restart(faults):
    faults.stack(workers=1)
    for i in range(2):
        assert faults.api.wait(faults.api.submit(program(f"print({i})\n")), timeout=60)["status"] == "succeeded"
    held = worker_backends(faults)
    assert held, "no connection of the worker stays open between runs"
    sessions = faults.sql(SESSIONS)[0]["sessions"]

    for i in range(RUNS):
        assert faults.api.wait(faults.api.submit(program(f"print({i})\n")), timeout=60)["status"] == "succeeded"
    opened = faults.sql(SESSIONS)[0]["sessions"] - sessions
    assert held & worker_backends(faults), f"{RUNS} runs replaced every pooled connection of the worker"
    # Each run's task, watch and output flusher opened one apiece before the pool (24 here); the rest
    # are this test's own queries, the heartbeat's and the reconciler's.
    assert opened <= RUNS, f"{opened} sessions opened for {RUNS} runs"

    faults.pg.stop(mode="fast")
    faults.pg.start()
    faults.api.outage = True  # the web's first borrow after the restart may answer 503
    answer = faults.api.submit_request(program("print('after')\n"))
    if answer.status_code == 503:
        answer = faults.api.submit_request(program("print('after')\n"))
    faults.api.outage = False
    assert answer.status_code == 201, answer.text
    run = faults.api.wait(answer.json()["id"], timeout=60)
    assert (run["status"], run["stdout"]) == ("succeeded", "after\n"), run
    assert not worker_backends(faults) & held, "connections from before the restart cannot be alive"
    faults.check_end_state()
