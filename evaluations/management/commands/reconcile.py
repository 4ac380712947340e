"""`manage.py reconcile`: the reconciler loop (evaluations/runs/reconciler.py), one per site at least."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time

from django import db
from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from evaluations.api.idempotency import idempotent_requests_purge
from evaluations.models import WorkerHeartbeat
from evaluations.runs import lifecycle, reconciler, retention

logger = logging.getLogger("evaluations.runs.reconciler")


class Command(BaseCommand):
    help = (
        "Every few seconds, end lost runs, store handed-over results, re-send lost run messages and "
        "forget expired idempotency keys; every CRUCIBLE_RETENTION_EVERY_SECONDS, delete expired run output."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument(
            "--every", type=float, default=settings.CRUCIBLE_RECONCILE_SECONDS, help="seconds between passes"
        )

    def handle(self, *args, once: bool = False, every: float = 5.0, **options) -> None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        hostname = f"reconciler@{socket.gethostname()}"
        started = timezone.now()
        logger.info("reconciler: a pass every %g s", every)
        retention_due = retention.RetentionSchedule(every=settings.CRUCIBLE_RETENTION_EVERY_SECONDS)
        failed_at: float | None = None
        while True:
            # A lease that lapsed while the database was away says nothing of its worker, which could
            # not renew it either: workers get one lease's time after a failed pass to renew theirs.
            recovering = failed_at is not None and time.monotonic() - failed_at < settings.CRUCIBLE_RUN_LEASE_SECONDS
            try:
                lifecycle.worker_heartbeat(
                    hostname=hostname, started=started, concurrency=0, kind=WorkerHeartbeat.Kind.RECONCILER
                )
                reconciler.reconcile(judge_leases=not recovering)
                idempotent_requests_purge()
                if retention_due():
                    retention_due.done(more=retention.retention_pass().more)
            except Exception as exc:  # the database or Redis is away: the next pass tries again
                failed_at = time.monotonic()
                logger.warning("reconciler: pass failed (%s: %s); next in %g s", type(exc).__name__, exc, every)
                db.connections.close_all()
            if once or stop.wait(every):
                return
