"""Reads: which runs a user may see. Every page and API endpoint goes through these."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from evaluations.models import Run, RunStatus
from evaluations.permissions import visible_runs_q


def run_list_visible(*, user) -> QuerySet[Run]:
    """Runs the user may read: evaluations.view_run as a queryset (see permissions.py)."""
    return Run.objects.filter(visible_runs_q(user)).select_related("submission", "submission__owner")


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


_UNKNOWN = object()


def run_status_payload(*, run: Run, queue_position: Any = _UNKNOWN) -> dict[str, Any]:
    """The `status` message of docs/live-runs.md (pass queue_position when it is known already)."""

    def iso(value) -> str | None:
        return value.isoformat() if value else None

    return {
        "type": "status",
        "status": run.status,
        "reason": run.reason,
        "detail": run.detail,
        "exit_code": run.exit_code,
        "queued_at": iso(run.queued_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "stdout_bytes": run.stdout_bytes,
        "stderr_bytes": run.stderr_bytes,
        "stdout_truncated": run.stdout_truncated,
        "stderr_truncated": run.stderr_truncated,
        "cpu_seconds": run.cpu_seconds,
        "peak_memory_bytes": run.peak_memory_bytes,
        "run_seconds": run.run_seconds,
        "queue_position": run_queue_position(run=run) if queue_position is _UNKNOWN else queue_position,
    }
