"""The web borrows PostgreSQL connections from a pool (settings: the web process only): requests
reuse the connections it holds instead of opening one each, and after a PostgreSQL restart the
dead ones are replaced by themselves. Here for the faults' private PostgreSQL, which it restarts."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.faults

WEB_BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE application_name = 'crucible-web' AND datname = current_database()"
)


def web_backends(faults) -> set[int]:
    return {row["pid"] for row in faults.sql(WEB_BACKENDS)}


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
