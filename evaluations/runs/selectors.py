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


def run_list_visible_summaries(*, user) -> QuerySet[Run]:
    """run_list_visible for lists, without the submissions' large columns."""
    return runs_without_bulk(run_list_visible(user=user))


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
    run = run_list_visible(user=user).filter(submission_id=submission_id).order_by("-queued_at", "-id").first()
    if run is None:
        raise Http404("No such submission")
    return run


def run_queue_position(*, run: Run) -> int | None:
    """How many queued runs are ahead of this one (0 = next); None unless it is queued."""
    if run.status != RunStatus.QUEUED:
        return None
    return Run.objects.filter(status=RunStatus.QUEUED, queued_at__lt=run.queued_at).count()


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


def run_waiting(*, run: Run) -> str | None:
    """What a queued run waits for, when it is more than its turn (see workers_unavailable)."""
    return workers_unavailable() if run.status == RunStatus.QUEUED else None


_UNKNOWN = object()


def run_status_payload(*, run: Run, queue_position: Any = _UNKNOWN, waiting: Any = _UNKNOWN) -> dict[str, Any]:
    """The `status` message of docs/live-runs.md (pass queue_position and waiting when known already)."""
    position = run_queue_position(run=run) if queue_position is _UNKNOWN else queue_position
    waits = run_waiting(run=run) if waiting is _UNKNOWN else waiting
    return protocol.status_message(run, queue_position=position, waiting=waits, server_time=timezone.now().isoformat())
