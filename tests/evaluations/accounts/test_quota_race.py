"""Parallel submissions cannot pass a quota together: each counts and inserts under the owner's
row lock (SELECT ... FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE transactions serialise writers).

Real threads, each with its own database connection, against committed data.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from evaluations.accounts.quotas import QuotaExceeded, worst_case_cpu_seconds
from evaluations.models import Profile, Run, RunStatus, Submission
from evaluations.runs import services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("postgresql_in_ci", "no_worker")]

THREADS = 20
QUOTA = 5


def race(user_id: int, action) -> list[tuple[str, object]]:
    """Run action(user) in THREADS threads released together; return each thread's outcome."""
    barrier = threading.Barrier(THREADS)
    outcomes: list[tuple[str, object]] = [("missing", None)] * THREADS

    def worker(i: int) -> None:
        try:
            user = get_user_model().objects.get(pk=user_id)  # this thread's own connection
            barrier.wait(timeout=30)
            outcomes[i] = ("created", action(user, i).pk)
        except QuotaExceeded as exc:
            outcomes[i] = ("refused", exc)
        except Exception as exc:  # a deadlock or an IntegrityError must fail the test, not vanish
            outcomes[i] = ("crashed", repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a submission hung"
    return outcomes


@pytest.mark.parametrize("quota", ["concurrent_runs", "runs_per_day"])
def test_twenty_parallel_submissions_get_exactly_the_quota_of_five(make_user, quota) -> None:
    # No profile yet: the threads also race to create the row they lock.
    user = make_user(quotas={quota: QUOTA})
    assert not Profile.objects.filter(user=user).exists()

    outcomes = race(
        user.pk, lambda owner, i: services.submission_create(owner=owner, name=f"racer {i}", code="print(1)\n")
    )

    kinds = Counter(kind for kind, _ in outcomes)
    assert kinds == {"created": QUOTA, "refused": THREADS - QUOTA}, outcomes
    assert Run.objects.filter(submission__owner=user).count() == QUOTA
    assert Submission.objects.filter(owner=user).count() == QUOTA
    for kind, exc in outcomes:
        if kind == "refused":
            assert (exc.quota, exc.limit, exc.usage) == (quota, QUOTA, QUOTA)
    assert Profile.objects.filter(user=user).count() == 1


def test_twenty_parallel_reruns_get_exactly_the_quota_of_five(make_user) -> None:
    user = make_user(quotas={"concurrent_runs": QUOTA + 1})
    first = services.submission_create(owner=user, name="rerun me", code="print(1)\n")

    outcomes = race(user.pk, lambda owner, i: services.run_rerun(run=Run.objects.get(pk=first.pk)))

    kinds = Counter(kind for kind, _ in outcomes)
    assert kinds == {"created": QUOTA, "refused": THREADS - QUOTA}, outcomes
    assert Run.objects.filter(submission__owner=user).count() == QUOTA + 1


def test_twenty_parallel_submissions_never_reserve_more_cpu_time_than_the_daily_quota(make_user, make_run) -> None:
    # 12.5 CPU seconds used today, 50 a day: room for three more runs of 10 s at their worst case.
    user = make_user(quotas={"cpu_seconds_per_day": 50, "concurrent_runs": 1000, "runs_per_day": 1000})
    make_run(user, status=RunStatus.SUCCEEDED, cpu_seconds=12.5)

    outcomes = race(
        user.pk,
        lambda owner, i: services.submission_create(owner=owner, name=f"racer {i}", code="print(1)\n", wall_seconds=10),
    )

    kinds = Counter(kind for kind, _ in outcomes)
    assert kinds == {"created": 3, "refused": THREADS - 3}, outcomes
    active = Run.objects.filter(submission__owner=user, status=RunStatus.QUEUED)
    worst_case = 12.5 + sum(worst_case_cpu_seconds(run.wall_seconds) for run in active)
    assert worst_case <= 50
    for kind, exc in outcomes:
        if kind == "refused":
            assert (exc.quota, exc.usage, exc.reserved, exc.requested) == ("cpu_seconds_per_day", 42.5, 30, 10)
