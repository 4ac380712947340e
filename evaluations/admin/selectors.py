"""Reads for the operations page: the broker's queue, runs in flight, workers' heartbeats, the
reconciler and its latest decisions, the log store's size and retention's last pass."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count
from django.utils import timezone

from evaluations.accounts.audit import ACTIONS, RECONCILE_ACTIONS, RETENTION_EXPIRE
from evaluations.models import AuditEvent, Run, RunStatus, WorkerHeartbeat
from evaluations.runs import logstore
from evaluations.runs.broker import queue_depth
from evaluations.runs.selectors import WORKER_STALE_SECONDS, runs_without_bulk

# Workers that stopped are listed (as gone) for a day, then no more.
WORKERS_SHOWN_FOR = timedelta(days=1)
DECISIONS_SHOWN = 20


@dataclass(frozen=True)
class OpsSnapshot:
    now: datetime
    queue_depth: int | None  # None: the broker did not answer
    queued_runs: int  # runs waiting, as the database has them
    running: list[tuple[Run, float]]  # with seconds since they started
    workers: list[tuple[WorkerHeartbeat, float, bool]]  # with seconds since last seen, and "gone"
    reconciler: tuple[WorkerHeartbeat, float, bool] | None  # the last one seen, as workers are
    decisions: list[tuple[AuditEvent, str]]  # the reconciler's latest, newest first, with what they did
    last_hour: list[tuple[str, int]]  # every status, in order, with how many runs queued in the last hour
    log_store: logstore.StoreUsage | None = None
    last_retention: AuditEvent | None = None  # retention's latest pass that deleted something


def ops_snapshot(*, now: datetime | None = None) -> OpsSnapshot:
    now = now or timezone.now()
    running = runs_without_bulk(
        Run.objects.filter(status=RunStatus.RUNNING).select_related("submission__owner").order_by("started_at")
    )
    counts = dict(
        Run.objects.filter(queued_at__gte=now - timedelta(hours=1))
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    workers = []
    recent = WorkerHeartbeat.objects.filter(last_seen__gte=now - WORKERS_SHOWN_FOR)
    reconciler = None
    for beat in recent.order_by("-last_seen", "hostname")[:100]:
        age = max(0.0, (now - beat.last_seen).total_seconds())
        if beat.kind == WorkerHeartbeat.Kind.RECONCILER:
            reconciler = reconciler or (beat, age, age > WORKER_STALE_SECONDS)
        else:
            workers.append((beat, age, age > WORKER_STALE_SECONDS or beat.problem != ""))
    return OpsSnapshot(
        now=now,
        queue_depth=queue_depth(),
        queued_runs=Run.objects.filter(status=RunStatus.QUEUED).count(),
        running=[(run, max(0.0, (now - run.started_at).total_seconds()) if run.started_at else 0.0) for run in running],
        workers=workers,
        reconciler=reconciler,
        decisions=[
            (event, ACTIONS[event.action])
            for event in AuditEvent.objects.filter(action__in=RECONCILE_ACTIONS)[:DECISIONS_SHOWN]
        ],
        last_hour=[(status, counts.get(status, 0)) for status in RunStatus.values],
        log_store=log_store_usage(),
        last_retention=AuditEvent.objects.filter(action=RETENTION_EXPIRE).first(),
    )


# Measuring the store sums every row: once a minute per process is enough for a page that reloads
# every few seconds.
USAGE_CACHE_SECONDS = 60.0
_usage: tuple[float, logstore.StoreUsage] | None = None
_usage_lock = threading.Lock()


def log_store_usage(*, fresh: bool = False) -> logstore.StoreUsage:
    global _usage
    with _usage_lock:
        if fresh or _usage is None or time.monotonic() - _usage[0] > USAGE_CACHE_SECONDS:
            _usage = (time.monotonic(), logstore.store_usage())
        return _usage[1]
