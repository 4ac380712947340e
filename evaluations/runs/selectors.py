"""Reads on runs: which runs a user may see (every page, API endpoint and websocket asks these),
their place in the queue and their status message."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from evaluations.accounts.permissions import visible_runs_q
from evaluations.live import protocol
from evaluations.models import Run, RunStatus, WorkerHeartbeat
from evaluations.runs import scheduling

# Heartbeats come every few seconds (evaluations/runs/worker.py); a worker silent this long is gone.
WORKER_STALE_SECONDS = 30.0
# Why workers refused to start is told to queued runs this long after.
WORKER_PROBLEM_SHOWN_SECONDS = 3600.0


def run_list_visible(*, user) -> QuerySet[Run]:
    """Runs the user may read: evaluations.view_run as a queryset (see accounts/permissions.py)."""
    return Run.objects.filter(visible_runs_q(user)).select_related("submission", "submission__owner")


# A submission's large columns (up to 1, 10 and 1 MiB): lists never show them, and a page of
# them would load every one whole.
SUBMISSION_BULK = ("code", "archive", "stdin")


def runs_without_bulk(runs: QuerySet[Run]) -> QuerySet[Run]:
    return runs.defer(*(f"submission__{name}" for name in SUBMISSION_BULK))


# What lists read of a run (the API's run_summary, status messages, the run list page): a page of
# full rows cost more to load than everything else the request did.
RUN_SUMMARY_FIELDS = (
    *("submission_id", "status", "reason", "detail", "exit_code", "wall_seconds", "memory_bytes"),
    *("cpu_seconds", "peak_memory_bytes", "peak_processes", "queued_at", "started_at", "finished_at"),
    *("stdout_bytes", "stderr_bytes", "stdout_truncated", "stderr_truncated", "output_expired_at"),
    *("submission__name", "submission__shared_with_team", "submission__owner_id", "submission__owner__username"),
)


def run_list_visible_summaries(*, user) -> QuerySet[Run]:
    """run_list_visible for lists: the columns of RUN_SUMMARY_FIELDS only."""
    return run_list_visible(user=user).only(*RUN_SUMMARY_FIELDS)


def run_list_own(*, user) -> QuerySet[Run]:
    return Run.objects.filter(submission__owner_id=user.pk).select_related("submission")


def run_get_visible(*, user, run_id: int) -> Run:
    """The run, or Http404 — also for another user's run, so its existence does not leak."""
    try:
        return run_list_visible(user=user).get(pk=run_id)
    except Run.DoesNotExist:
        raise Http404("No such run") from None


def run_latest_of_submission(*, user, submission_id: int) -> Run:
    """The newest run of a submission the user may see, or Http404."""
    # submission__pk, not submission_id: an id beyond the column's range then matches nothing (a 404)
    # instead of overflowing the database driver.
    run = run_list_visible(user=user).filter(submission__pk=submission_id).order_by("-queued_at", "-id").first()
    if run is None:
        raise Http404("No such submission")
    return run


def run_owner_names(*, run_ids: list[int]) -> dict[int, str]:
    """Each run's owner's username (for the logs of workers and the reconciler, which act for them)."""
    rows = Run.objects.filter(pk__in=run_ids).values_list("pk", "submission__owner__username")
    return dict(rows)


def run_status_of(*, run_id: int) -> str | None:
    """Only the run's status (None: no such run), for frequent checks by sockets already let in."""
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first()


def run_queue_state(*, run: Run) -> tuple[int | None, str | None]:
    """From one look at the queues, (queue position, what it waits for) of a queued run; (None, None)
    for any other. The position counts the queued runs expected to start before it (0 = next),
    users taking turns (runs/scheduling.py). It waits, beyond its turn, for a worker (see
    workers_unavailable) or for one of its owner's running runs to end (their concurrent-run quota)."""
    if run.status != RunStatus.QUEUED:
        return None, None
    known = getattr(run, "queue_state", None)  # what its status said as it was committed
    if known is not None:
        return known
    queues = scheduling.owner_queues()
    waiting = workers_unavailable() or scheduling.quota_waits(queues=queues).get(run.submission.owner_id)
    return scheduling.expected_position(run=run, queues=queues), waiting


def workers_unavailable(*, now: datetime | None = None) -> str | None:
    """None while some worker takes runs; else why queued runs wait, in words for their owners."""
    now = now or timezone.now()
    beats = WorkerHeartbeat.objects.filter(kind=WorkerHeartbeat.Kind.WORKER)
    if beats.filter(problem="", last_seen__gte=now - timedelta(seconds=WORKER_STALE_SECONDS)).exists():
        return None
    recent = now - timedelta(seconds=WORKER_PROBLEM_SHOWN_SECONDS)
    refusals = beats.filter(last_seen__gte=recent).exclude(problem__in=["", "stopped"]).order_by("-last_seen")[:3]
    why = "; ".join(f"{beat.hostname} {beat.problem}" for beat in refusals)
    return "no worker is available" + (f" ({why})" if why else "; the run starts when one is")


_UNKNOWN = object()


def run_status_payload(*, run: Run, queue_position: Any = _UNKNOWN, waiting: Any = _UNKNOWN) -> dict[str, Any]:
    """The `status` message of docs/live-runs.md (pass queue_position and waiting when known already)."""
    if queue_position is _UNKNOWN or waiting is _UNKNOWN:
        queue_position, waiting = run_queue_state(run=run)
    now = timezone.now().isoformat()
    return protocol.status_message(run, queue_position=queue_position, waiting=waiting, server_time=now)
