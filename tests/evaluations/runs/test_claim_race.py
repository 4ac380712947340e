"""Workers claiming at once cannot start more of a user's runs than their concurrent-run quota, nor
one run twice: each claim takes the owner's row lock and counts again (runs/lifecycle.py).

Real threads, each with its own database connection, against committed data.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from evaluations.models import Run, RunStatus
from evaluations.runs import lifecycle

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("postgresql_in_ci", "no_worker")]

WORKERS = 12


def claim_together() -> list[object]:
    barrier = threading.Barrier(WORKERS)
    outcomes: list[object] = ["missing"] * WORKERS

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            outcomes[i] = lifecycle.run_claim_next(worker=f"w{i}")
        except Exception as exc:  # a deadlock must fail the test, not vanish
            outcomes[i] = repr(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a claim hung"
    return outcomes


def test_twelve_workers_claiming_at_once_start_each_users_quota_and_no_run_twice(make_user, make_run) -> None:
    a = make_user("a", quotas={"concurrent_runs": 3, "runs_per_day": 1000})
    b = make_user("b", quotas={"concurrent_runs": 2, "runs_per_day": 1000})
    for owner in (a, b):
        for _ in range(10):
            make_run(owner)

    outcomes = claim_together()

    claimed = [o for o in outcomes if isinstance(o, int)]
    assert all(o is None or isinstance(o, int) for o in outcomes), outcomes
    assert len(claimed) == len(set(claimed)) == 5
    running = Counter(
        Run.objects.filter(status=RunStatus.RUNNING).values_list("submission__owner__username", flat=True)
    )
    assert running == {"a": 3, "b": 2}
