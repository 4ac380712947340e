"""Fair scheduling: whose queued run a worker with a free slot claims next (docs/lifecycle.md).

Users with runs waiting take turns: fewest runs running first, then the one served longest ago,
then the one whose oldest run waited longest; within a user, oldest first. A user's concurrent-run
quota caps how many of their runs run at once; the rest wait. Messages only say "a slot is free".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.db.models import Count, F, Min, Q, Window
from django.db.models.functions import RowNumber

from evaluations.accounts.quotas import quotas_for_users
from evaluations.accounts.roles import cached_profile, remember_profile
from evaluations.models import Run, RunStatus

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class OwnerQueue:
    """One user's runs waiting and running, and how many of them may run at once."""

    owner: object  # the User
    queued: int
    running: int
    limit: int | None  # their concurrent-run quota; None: no quota
    last_served: datetime | None
    oldest_queued: datetime

    @property
    def owner_id(self) -> int:
        return self.owner.pk

    @property
    def claimable(self) -> int:
        """How many of their queued runs may start now."""
        if self.limit is None:
            return self.queued
        return max(0, min(self.queued, self.limit - self.running))

    def turn(self) -> tuple:
        return (self.running, self.last_served or _NEVER, self.oldest_queued, self.owner_id)


def owner_queues() -> list[OwnerQueue]:
    """Every user with runs queued, in the order they take their turns (those at their quota too)."""
    rows = (
        Run.objects.filter(status__in=(RunStatus.QUEUED, RunStatus.RUNNING))
        .values("submission__owner_id")
        .annotate(
            queued=Count("pk", filter=Q(status=RunStatus.QUEUED)),
            running=Count("pk", filter=Q(status=RunStatus.RUNNING)),
            oldest=Min("queued_at", filter=Q(status=RunStatus.QUEUED)),
        )
        .order_by()
    )
    counts = {row["submission__owner_id"]: row for row in rows if row["queued"]}
    if not counts:
        return []
    users = list(get_user_model().objects.filter(pk__in=counts).select_related("profile"))
    for user in users:
        remember_profile(user)
    quotas = quotas_for_users(users)
    queues = [
        OwnerQueue(
            owner=user,
            queued=counts[user.pk]["queued"],
            running=counts[user.pk]["running"],
            limit=quotas[user.pk].concurrent_runs,
            last_served=getattr(cached_profile(user), "last_run_started_at", None),
            oldest_queued=counts[user.pk]["oldest"],
        )
        for user in users
    ]
    return sorted(queues, key=OwnerQueue.turn)


def next_claimable(*, prefer: int | None = None) -> tuple[OwnerQueue, int] | None:
    """The user whose turn it is and the run of theirs to start: `prefer` if it is one of their
    queued runs (the run a message named), else their oldest. None if no queued run may start."""
    for queue in owner_queues():
        if queue.claimable <= 0:
            continue
        own = Run.objects.filter(status=RunStatus.QUEUED, submission__owner_id=queue.owner_id)
        if prefer is not None and own.filter(pk=prefer).exists():
            return queue, prefer
        run_id = own.order_by("queued_at", "id").values_list("pk", flat=True).first()
        if run_id is not None:
            return queue, run_id
    return None


def claimable_runs() -> list[int]:
    """The queued runs that may start now (each user's oldest, up to their free slots), in turn order."""
    ids: list[int] = []
    for queue in owner_queues():
        if queue.claimable > 0:
            own = Run.objects.filter(status=RunStatus.QUEUED, submission__owner_id=queue.owner_id)
            ids += own.order_by("queued_at", "id").values_list("pk", flat=True)[: queue.claimable]
    return ids


def free_slots(*, owner, limit: int | None) -> int | None:
    """How many more of the owner's runs may run now: None for no quota. Counts queued runs too,
    which each hold a message already."""
    if limit is None:
        return None
    active = Run.objects.filter(submission__owner_id=owner.pk, status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).count()
    return max(0, limit - active)


def expected_order(*, limit: int, queues: list[OwnerQueue] | None = None) -> list[Run]:
    """The first `limit` queued runs in the order they are expected to start: a round of turns gives
    each user with runs waiting one, in turn order (quotas aside: they hold a user back only while
    their runs run). `queues`: owner_queues(), if the caller has them already."""
    queues = owner_queues() if queues is None else queues
    turn = {q.owner_id: i for i, q in enumerate(queues)}
    # Each user's queued runs numbered oldest first, in one query (one per user took 100 ms of CPU
    # with 20 users waiting): round n of the turns takes every user's n-th run, and `rounds` rounds
    # hold the first `limit` runs.
    rounds = 1
    while rounds < limit and sum(min(q.queued, rounds) for q in queues) < limit:
        rounds += 1
    numbered = (
        Run.objects.filter(status=RunStatus.QUEUED)
        .annotate(
            owner=F("submission__owner_id"),
            nth=Window(RowNumber(), partition_by=F("submission__owner_id"), order_by=(F("queued_at"), F("id"))),
        )
        .filter(nth__lte=rounds)
        .values_list("pk", "owner", "nth")
    )
    first = sorted((nth, turn[owner], pk) for pk, owner, nth in numbered if owner in turn)[:limit]
    runs = (
        Run.objects.filter(status=RunStatus.QUEUED)
        .select_related("submission")
        .defer("submission__code", "submission__archive", "submission__stdin")
        .in_bulk([pk for _, _, pk in first])
    )
    return [runs[pk] for _, _, pk in first if pk in runs]


def expected_position(*, run: Run, queues: list[OwnerQueue] | None = None) -> int:
    """How many queued runs are expected to start before this one (0 = next): the owner's own older
    ones, and as many of every other user's as turns come round before it."""
    owner_id = run.submission.owner_id
    own = Run.objects.filter(status=RunStatus.QUEUED, submission__owner_id=owner_id)
    ahead = own.filter(Q(queued_at__lt=run.queued_at) | Q(queued_at=run.queued_at, pk__lt=run.pk)).count()
    position, before = ahead, True
    for queue in owner_queues() if queues is None else queues:
        if queue.owner_id == owner_id:
            before = False
        else:
            position += min(queue.queued, ahead + (1 if before else 0))
    return position


def quota_waits(*, queues: list[OwnerQueue] | None = None) -> dict[int, str]:
    """What the queued runs of each user at their concurrent-run quota wait for, by user id."""
    return {
        q.owner_id: f"your concurrent-run quota ({q.limit}) is in use: it starts when one of your running runs ends"
        for q in (owner_queues() if queues is None else queues)
        if q.limit is not None and q.running >= q.limit
    }
