"""The worker process: its start-up checks and recovery, its heartbeat, and its shutdown. Celery
imports this module at worker start (CELERY_IMPORTS), which connects the signal handlers."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading

from celery.signals import worker_init, worker_process_shutdown, worker_ready
from django import db
from django.utils import timezone

from evaluations.models import Run, RunStatus
from evaluations.runs import engines, services
from evaluations.runs.tasks import execute_run

logger = logging.getLogger(__name__)

# The main process writes a WorkerHeartbeat row this often, from a daemon thread (a task would
# queue behind runs and say nothing while all are busy); the ops page reads it.
HEARTBEAT_SECONDS = 10.0


@worker_init.connect
def refuse_without_sandbox(**kwargs) -> None:
    # Never run user code unsandboxed: a worker that cannot start sandboxes does not start at all.
    import sandbox

    try:
        engine = engines.engine_from_settings()
        engine.check()
    except sandbox.SandboxError as exc:
        print(f"crucible worker: refusing to start: {exc}", file=sys.stderr, flush=True)
        os._exit(78)
    engine.sweep()


@worker_process_shutdown.connect
def close_engines_at_shutdown(**kwargs) -> None:
    # A pool child ends with os._exit, which runs no finalizers: without this its warm launcher's
    # work dir and cgroup would stay until the next worker's start-up sweep.
    engines.close_engines()


@worker_ready.connect
def recover_runs(**kwargs) -> None:
    services.run_reap_lost()
    # Queued runs whose message was lost (e.g. an embedded Redis restarted without persistence):
    # send them again; a duplicate delivery is harmless because claiming is conditional.
    for run_id in Run.objects.filter(status=RunStatus.QUEUED).values_list("pk", flat=True):
        execute_run.delay(run_id)


@worker_ready.connect
def start_heartbeat(sender=None, **kwargs) -> None:
    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    concurrency = getattr(getattr(sender, "controller", None), "concurrency", 0)
    heartbeat_start(hostname=hostname, concurrency=int(concurrency or 0))


def heartbeat_start(*, hostname: str, concurrency: int, interval: float = HEARTBEAT_SECONDS) -> threading.Event:
    """Start the heartbeat thread; set the returned event to stop it."""
    stop = threading.Event()
    started = timezone.now()

    def beat() -> None:
        while True:
            try:
                services.worker_heartbeat(hostname=hostname, started=started, concurrency=concurrency)
            except Exception:
                logger.exception("worker heartbeat failed; trying again in %.0f s", interval)
            finally:
                db.connection.close()  # this thread's own connection: do not hold it between beats
            if stop.wait(interval):
                return

    threading.Thread(target=beat, name="crucible-heartbeat", daemon=True).start()
    return stop
