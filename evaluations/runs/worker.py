"""The worker process: its start-up check, its heartbeat and periodic sandbox sweep, and how it
stops. Celery imports this module at worker start (CELERY_IMPORTS), which connects the handlers."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading

from celery.signals import (
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from django import db
from django.conf import settings
from django.utils import timezone

from evaluations.monitoring.logging import connect_worker_signals
from evaluations.runs import engines, execution, lifecycle

logger = logging.getLogger(__name__)
connect_worker_signals()  # each task's lines carry its task id

# The main process writes a WorkerHeartbeat row this often, from a daemon thread (a task would
# queue behind runs and say nothing while all are busy); the ops page and queued runs read it.
HEARTBEAT_SECONDS = 10.0
# Sandboxes, cgroups and work dirs left by dead worker processes on this host are swept this often.
SWEEP_SECONDS = 30.0
# Tells a pool child that the stopping worker's grace is over (Celery's prefork children ignore SIGTERM).
STOP_SIGNAL = signal.SIGUSR2

_controller = None  # the WorkController of this main process


def _hostname(sender) -> str:
    return getattr(sender, "hostname", None) or socket.gethostname()


@worker_init.connect
def refuse_without_sandbox(sender=None, **kwargs) -> None:
    # Never run user code unsandboxed: a worker that cannot start sandboxes does not start at all,
    # and says why where queued runs' pages and the ops page can read it.
    import sandbox

    global _controller
    _controller = sender
    try:
        engine = engines.engine_from_settings()
        engine.check()
    except sandbox.SandboxError as exc:
        print(f"crucible worker: refusing to start: {exc}", file=sys.stderr, flush=True)
        try:
            lifecycle.worker_heartbeat(
                hostname=_hostname(sender), started=timezone.now(), concurrency=0, problem=f"refused to start: {exc}"
            )
        except Exception:
            logger.exception("could not record why this worker refused to start")
        os._exit(78)
    engine.sweep()


@task_prerun.connect
def listen_for_stop(**kwargs) -> None:
    # SIGTERM to the whole process group (systemd, a terminal) reaches pool children too: one running
    # a run gives it the grace instead of dying at once (a second signal ends it now); an idle one
    # goes as billiard would have it. STOP_SIGNAL comes from the main process when the grace is over.
    # Installed before each task, in the child's main thread: billiard resets signals after
    # worker_process_init.
    if signal.getsignal(signal.SIGTERM) is _child_stop_requested:
        return
    _previous[signal.SIGTERM] = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _child_stop_requested)
    signal.signal(STOP_SIGNAL, lambda signum, frame: execution.WORKER_STOPPING.set())


_previous: dict[int, object] = {}
_stop_requested = threading.Event()


def _child_stop_requested(signum, frame) -> None:
    if not execution.EXECUTING.is_set():
        previous = _previous.get(signum)
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    # The main process got the signal too and tells us when the grace is over (stop_runs_after_grace).
    if _stop_requested.is_set():
        execution.WORKER_STOPPING.set()
    _stop_requested.set()


_in_pool_process = threading.Event()  # set in a worker's pool processes, where tasks run


@worker_process_init.connect
def pool_database_connections(**kwargs) -> None:
    # A run's task, watch and output flusher each used to open a PostgreSQL connection of their own
    # (~5 ms of CPU each, server side included): this child's threads borrow from a pool made after
    # the fork instead (Django's pool checks each connection it lends: a restarted server heals).
    _in_pool_process.set()
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.postgresql" or settings.DB_POOL_SIZE <= 0:
        return
    database["CONN_HEALTH_CHECKS"] = True  # what makes Django's pool check them
    options = database.setdefault("OPTIONS", {})
    options["pool"] = dict(settings.DB_WORKER_POOL)
    options["application_name"] = "crucible-worker"


@task_prerun.connect
@task_postrun.connect
def return_database_connections(**kwargs) -> None:
    # Each task starts and ends without a connection: back to the pool, or closed without one. Not
    # elsewhere (a task run in its caller's process), where the connection is the caller's.
    if _in_pool_process.is_set():
        db.close_old_connections()


@worker_process_init.connect
def prepare_engine_in_child(**kwargs) -> None:
    # Each pool child boots a sandbox for its first run now, off that run's critical path.
    try:
        engines.prepare_engine()
    except Exception:  # noqa: BLE001 - the first run then boots its own, and says why if it cannot
        logger.exception("could not prepare the sandbox engine")


@worker_process_shutdown.connect
def close_engines_at_shutdown(**kwargs) -> None:
    # A pool child ends with os._exit, which runs no finalizers: end its warm launchers now rather
    # than leave them to the engine's janitor (docs/sandbox.md).
    engines.close_engines()


@worker_ready.connect
def start_heartbeat(sender=None, **kwargs) -> None:
    concurrency = getattr(getattr(sender, "controller", None), "concurrency", 0)
    heartbeat_start(hostname=_hostname(sender), concurrency=int(concurrency or 0))


@worker_shutting_down.connect
def stop_runs_after_grace(sender=None, **kwargs) -> None:
    # Celery stops taking runs and waits for running ones; past the grace, their pool children are
    # told to stop them, and each run ends truthfully (execution._stopped_fields).
    grace = settings.CRUCIBLE_STOP_GRACE_SECONDS
    logger.warning("worker stopping: running runs have %g s to finish; queued runs stay queued", grace)
    timer = threading.Timer(grace, _signal_pool_children)
    timer.daemon = True
    timer.start()


@worker_shutdown.connect
def say_stopped(sender=None, **kwargs) -> None:
    try:
        lifecycle.worker_stopped(hostname=_hostname(sender))
    except Exception:
        logger.warning("could not record that this worker stopped", exc_info=True)


def _signal_pool_children() -> None:
    pool = getattr(_controller, "pool", None)
    pids = (getattr(pool, "info", None) or {}).get("processes", []) if pool is not None else []
    for pid in pids:
        try:
            os.kill(pid, STOP_SIGNAL)
        except ProcessLookupError:
            pass
    logger.warning("grace over: told %d pool process(es) to stop their runs", len(pids))


def heartbeat_start(
    *, hostname: str, concurrency: int, interval: float = HEARTBEAT_SECONDS, sweep_every: float = SWEEP_SECONDS
) -> threading.Event:
    """Start the heartbeat thread (it also sweeps what dead sandboxes left); set the event to stop it."""
    stop = threading.Event()
    started = timezone.now()

    def beat() -> None:
        next_sweep = 0.0
        elapsed = 0.0
        while True:
            try:
                lifecycle.worker_heartbeat(hostname=hostname, started=started, concurrency=concurrency)
            except Exception:
                logger.exception("worker heartbeat failed; trying again in %.0f s", interval)
            finally:
                db.connection.close()  # this thread's own connection: do not hold it between beats
            if elapsed >= next_sweep:
                next_sweep = elapsed + sweep_every
                try:
                    engines.engine_from_settings().sweep()
                except Exception:
                    logger.exception("sweeping dead sandboxes failed")
            if stop.wait(interval):
                return
            elapsed += interval

    threading.Thread(target=beat, name="crucible-heartbeat", daemon=True).start()
    return stop
