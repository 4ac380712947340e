"""Reads: which runs a user may see. Every page and API endpoint goes through these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.db.models import Count, QuerySet
from django.http import Http404
from django.utils import timezone

from evaluations import realtime
from evaluations.models import Profile, Role, Run, RunStatus, Team, WorkerHeartbeat
from evaluations.permissions import role_of, team_id_of, visible_runs_q


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
        # Pages count elapsed time on the server's clock, not the browser's (which may be off).
        "server_time": timezone.now().isoformat(),
    }


# --- Accounts and operations ---------------------------------------------------------------------


def user_role(*, user) -> str:
    """The role a user holds, from the rows (permissions.role_of answers None for inactive users)."""
    if user.is_superuser:
        return Role.ADMIN
    return Profile.objects.filter(user_id=user.pk).values_list("role", flat=True).first() or Role.RESEARCHER


def run_list_groups(*, user) -> list[str]:
    """The channel-layer groups a user's run-list websocket joins: the same rule as
    visible_runs_q (every run for reviewers and admins; own runs and the team's shared ones)."""
    role = role_of(user)
    if role is None:
        return []
    if role in (Role.REVIEWER, Role.ADMIN):
        return [realtime.ALL_RUNS_GROUP]
    team = team_id_of(user)
    return [realtime.user_group(user.pk)] + ([realtime.team_group(team)] if team is not None else [])


def websocket_user(*, user_id: int, token_id: int | None, session_key: str | None):
    """The user an open websocket acts for, read again from the database; None once they are
    deactivated, their token revoked, or their session ended (logout, password change)."""
    from django.contrib.auth import get_user

    from evaluations.models import ApiToken

    if token_id is not None:
        token = ApiToken.objects.select_related("user").filter(pk=token_id, revoked_at__isnull=True).first()
        user = token.user if token is not None and token.user_id == user_id else None
        return user if user is not None and user.is_active else None
    if session_key is None:
        return None
    # get_user checks what a request with this session would: the session exists, the user is
    # active, and the password hash the session was made with still matches.
    from importlib import import_module

    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(SimpleNamespace(session=store))
    return user if user.is_authenticated and user.pk == user_id else None


def run_list_audience(*, run: Run) -> list[str]:
    """Besides its owner's: the run-list groups that show this run."""
    groups = [realtime.ALL_RUNS_GROUP]
    if run.submission.shared_with_team:
        team = Profile.objects.filter(user_id=run.submission.owner_id).values_list("team_id", flat=True).first()
        if team is not None:
            groups.append(realtime.team_group(team))
    return groups


def user_team(*, user) -> Team | None:
    profile = Profile.objects.filter(user_id=user.pk).select_related("team").first()
    return profile.team if profile is not None else None


# Heartbeats come every HEARTBEAT_SECONDS (evaluations/tasks.py); a worker silent for this long
# is shown as gone.
WORKER_STALE_SECONDS = 30.0
# Workers that stopped are listed (as gone) for a day, then no more.
WORKERS_SHOWN_FOR = timedelta(days=1)


def queue_depth() -> int | None:
    """Messages waiting in the Celery "runs" queue on the broker (not yet taken by a worker), or
    None if Redis does not answer. kombu's Redis transport keeps a queue as a Redis list named
    after it, plus one list per priority step ("runs\\x06\\x163", ...) when priorities are used."""
    import redis
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    names = [queue if step == 0 else f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS]
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(name)
            return sum(pipe.execute())
    except redis.RedisError:
        return None
    finally:
        client.close()


@dataclass(frozen=True)
class OpsSnapshot:
    now: datetime
    queue_depth: int | None  # None: the broker did not answer
    queued_runs: int  # runs waiting, as the database has them
    running: list[tuple[Run, float]]  # with seconds since they started
    workers: list[tuple[WorkerHeartbeat, float, bool]]  # with seconds since last seen, and "gone"
    last_hour: list[tuple[str, int]]  # every status, in order, with how many runs queued in the last hour


def ops_snapshot(*, now: datetime | None = None) -> OpsSnapshot:
    now = now or timezone.now()
    running = Run.objects.filter(status=RunStatus.RUNNING).select_related("submission__owner").order_by("started_at")
    counts = dict(
        Run.objects.filter(queued_at__gte=now - timedelta(hours=1))
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    workers = []
    recent = WorkerHeartbeat.objects.filter(last_seen__gte=now - WORKERS_SHOWN_FOR)
    for beat in recent.order_by("-last_seen", "hostname")[:100]:
        age = max(0.0, (now - beat.last_seen).total_seconds())
        workers.append((beat, age, age > WORKER_STALE_SECONDS))
    return OpsSnapshot(
        now=now,
        queue_depth=queue_depth(),
        queued_runs=Run.objects.filter(status=RunStatus.QUEUED).count(),
        running=[(run, max(0.0, (now - run.started_at).total_seconds()) if run.started_at else 0.0) for run in running],
        workers=workers,
        last_hour=[(status, counts.get(status, 0)) for status in RunStatus.values],
    )
