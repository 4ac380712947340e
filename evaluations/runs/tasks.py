"""Celery tasks: thin wrappers that take an id and call one function."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading

from celery import shared_task
from celery.signals import worker_init, worker_process_shutdown, worker_ready
from django import db
from django.conf import settings
from django.utils import timezone

from evaluations import execution, services

logger = logging.getLogger(__name__)

# The sandbox enforces the wall limit itself; these only catch a sandbox layer that hangs.
_SOFT_LIMIT = int(settings.CRUCIBLE_MAX_WALL_SECONDS) + 60


@shared_task(name="evaluations.run_execute", soft_time_limit=_SOFT_LIMIT, time_limit=_SOFT_LIMIT + 30)
def run_execute(run_id: int) -> None:
    if not execution.run_execute(run_id):
        # A redelivery of a run that is `running`: its first worker may have died. Look again once
        # it is past its wall limit; if still running then, it is marked error/worker_lost.
        delay = services.run_lost_check_delay(run_id=run_id)
        if delay is not None:
            run_reap_lost.apply_async(countdown=delay)


@shared_task(name="evaluations.run_reap_lost")
def run_reap_lost() -> None:
    services.run_reap_lost()


@worker_init.connect
def refuse_without_sandbox(**kwargs) -> None:
    # Never run user code unsandboxed: a worker that cannot start sandboxes does not start at all.
    import sandbox

    try:
        engine = execution.engine_from_settings()
        engine.check()
    except sandbox.SandboxError as exc:
        print(f"crucible worker: refusing to start: {exc}", file=sys.stderr, flush=True)
        os._exit(78)
    engine.sweep()


@worker_process_shutdown.connect
def close_engines(**kwargs) -> None:
    # A pool child ends with os._exit, which runs no finalizers: without this its warm launcher's
    # work dir and cgroup would stay until the next worker's start-up sweep.
    execution.close_engines()


@worker_ready.connect
def recover_runs(**kwargs) -> None:
    from evaluations.models import Run, RunStatus

    services.run_reap_lost()
    # Queued runs whose message was lost (e.g. an embedded Redis restarted without persistence):
    # send them again; a duplicate delivery is harmless because claiming is conditional.
    for run_id in Run.objects.filter(status=RunStatus.QUEUED).values_list("pk", flat=True):
        run_execute.delay(run_id)


# Workers say they are alive on the ops page: the main process writes a WorkerHeartbeat row this
# often, from a daemon thread (a task would queue behind runs and say nothing while all are busy).
HEARTBEAT_SECONDS = 10.0


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
