"""Reads for the operations page: the broker's queue, runs in flight, workers' heartbeats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from evaluations.models import Run, RunStatus, WorkerHeartbeat

# Heartbeats come every HEARTBEAT_SECONDS (evaluations/runs/worker.py); a worker silent for this long
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
