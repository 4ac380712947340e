"""The worker side of a run: claim → sandbox.ExecRequest → engine → store how it ended.

Every outcome ends the run (an exception here is ours: error/sandbox_error). Output and samples go
to the log store, then to the run's group; a watcher renews the run's lease and turns a cancel
request into the engine's cancel event. docs/lifecycle.md tells the whole story.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection

import sandbox
from evaluations.live.publisher import RunPublisher
from evaluations.models import Run, RunReason, RunStatus
from evaluations.monitoring.logging import in_log_context, log_bind
from evaluations.runs import broker, lifecycle, selectors
from evaluations.runs.engines import engine_from_settings, run_tmp_bytes
from evaluations.runs.logstore import store_is_full
from evaluations.runs.validation import project_files

logger = logging.getLogger(__name__)

CANCEL_POLL_SECONDS = 0.2
# Set in a pool child when its stopping worker's grace is over (evaluations/runs/worker.py).
WORKER_STOPPING = threading.Event()
# Set while this process executes a run (a stop signal then waits for the grace).
EXECUTING = threading.Event()


def exec_request_for(run: Run) -> sandbox.ExecRequest:
    """The sandbox request of a run: its submission's files, and its batch input's stdin and argv."""
    limits = sandbox.Limits(
        wall_seconds=run.wall_seconds,
        memory_bytes=run.memory_bytes,
        tmp_bytes=run_tmp_bytes(run.memory_bytes),
        stdout_bytes=run.stdout_limit_bytes,
        stderr_bytes=run.stderr_limit_bytes,
    )
    sub = run.submission
    if sub.archive is not None:
        files = project_files(archive=bytes(sub.archive), archive_name=sub.archive_name, entrypoint=sub.entrypoint)
    else:
        files = {sub.entrypoint: sub.code.encode("utf-8")}
    argv, stdin = list(sub.argv), sub.stdin.encode("utf-8")
    batch_input = run.batch_input
    if batch_input is not None:
        argv += batch_input.argv
        if batch_input.stdin_file:
            stdin = files[batch_input.stdin_file]  # checked at submission; a KeyError ends it as our error
        elif batch_input.stdin is not None:
            stdin = batch_input.stdin.encode("utf-8")
    return sandbox.ExecRequest(
        files=files, entrypoint=sub.entrypoint, argv=tuple(argv), stdin=stdin, limits=limits, preload=sub.preload
    )


class _Watch:
    """While a run executes, a thread of its own: renews the run's lease, turns a cancel request or
    the end of a stopping worker's grace into the engine's cancel event, and notices when the run
    is no longer this worker's (the reconciler ended it). It outlasts database errors."""

    def __init__(self, run_id: int, worker: str) -> None:
        self.run_id, self.worker = run_id, worker
        self.cancel = threading.Event()
        self.lost = False  # the run was ended by someone else: its result is not ours to store
        self.stopped = False  # the worker is stopping and the run's grace is over
        self.storing = False  # the outcome is being stored
        self.moved_at: float | None = None  # queue_clock() at the first look, after the claim moved the queue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=in_log_context(self._watch), name=f"run-{run_id}-watch", daemon=True)

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _tell_the_queue(self, *, last_chance: bool = False) -> bool:
        # The queue moved up by this run: its pages hear it once the sandbox has started (or the run
        # has ended), so that these queries do not hold the interpreter while the sandbox starts.
        try:
            if self.moved_at is None:
                self.moved_at = lifecycle.queue_clock()
            return lifecycle.queue_moved_tell(moved_at=self.moved_at, last_chance=last_chance)
        except Exception as exc:  # best effort, like every live message: pages also ask on connect
            logger.warning("run %s: could not tell queued runs their positions (%s)", self.run_id, exc)
            return True

    def _watch(self) -> None:
        renew_every = settings.CRUCIBLE_RUN_LEASE_SECONDS / 4
        next_renew = time.monotonic() + renew_every
        failures = 0
        told = False
        try:
            while not self._stop.wait(CANCEL_POLL_SECONDS):
                if not told:
                    told = self._tell_the_queue()
                if WORKER_STOPPING.is_set() and not self.cancel.is_set():
                    self.stopped = True
                    self.cancel.set()
                try:
                    if time.monotonic() >= next_renew and not self.lost:
                        renewed = lifecycle.run_lease_renew(run_id=self.run_id, worker=self.worker)
                        if not renewed and not self.storing:  # (once storing, it may have just ended)
                            logger.warning("run %s was ended while this worker ran it; stopping it", self.run_id)
                            self.lost = True
                            self.cancel.set()
                        next_renew = time.monotonic() + renew_every
                    if not self.cancel.is_set() and lifecycle.run_cancel_requested(run_id=self.run_id):
                        self.cancel.set()
                    failures = 0
                except DatabaseError as exc:
                    failures += 1
                    if failures == 1 or failures % 20 == 0:
                        logger.warning("run %s: database error while watching it (%s); retrying", self.run_id, exc)
                    connection.close()  # a broken connection is replaced on the next query
                    self._stop.wait(min(2.0, CANCEL_POLL_SECONDS * 2**failures))
            if not told:
                self._tell_the_queue(last_chance=True)
        finally:
            connection.close()  # this thread's own database connection


class _Sink:
    """The engine's output and metrics callbacks: into the log store and out to websockets. A
    storage failure (the database failing or full) stops the sandbox rather than losing output
    silently; the run then ends as error/storage_error and the worker carries on."""

    def __init__(self, run: Run, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.failure: Exception | None = None
        self.publisher = RunPublisher(run, on_failure=self._failed)
        self.samples = _Samples()
        self.stored = 0

    def output(self, stream: sandbox.Stream, offset: int, data: bytes) -> None:
        if self.failure is None:
            self.publisher.output(stream.value, offset, data)
            self.stored += len(data)

    def metrics(self, sample: sandbox.MetricSample) -> None:
        if self.failure is None:
            self.publisher.metrics(self.samples(sample))

    def _failed(self, exc: Exception) -> None:
        logger.error("run %s: the log store failed (%s); stopping the run", self.publisher.run_id, exc)
        self.failure = exc
        self.cancel.set()

    def failure_detail(self) -> str:
        what = "it is full" if store_is_full(self.failure) else type(self.failure).__name__
        return (
            f"the log store could not keep this run's output ({what}) after {self.stored} bytes, so the "
            "run was stopped. This is our fault, not your code's: run it again later."
        )

    def close(self) -> None:
        try:
            self.publisher.close()
        except (DatabaseError, ValueError, TimeoutError) as exc:
            if self.failure is None:
                self._failed(exc)


class _Samples:
    """Turns the engine's cumulative samples into stored/published dicts with a CPU percentage."""

    def __init__(self) -> None:
        self._last: tuple[float, float] = (0.0, 0.0)

    def __call__(self, sample: sandbox.MetricSample) -> dict:
        t, cpu = sample.elapsed_seconds, sample.cpu_seconds
        percent = None
        if cpu is not None and t > self._last[0]:
            percent = round(100 * max(0.0, cpu - self._last[1]) / (t - self._last[0]), 1)
            self._last = (t, cpu)
        return {
            "t": round(t, 3),
            "cpu_seconds": cpu,
            "cpu_percent": percent,
            "memory_bytes": sample.memory_bytes,
            "processes": sample.processes,
        }


def worker_name() -> str:
    """This process, as the run's `worker` column and the logs name it."""
    from celery import current_task

    node = getattr(getattr(current_task, "request", None), "hostname", None) or socket.gethostname()
    return f"{node} pid {os.getpid()}"


def run_in_sandbox(run_id: int) -> bool:
    """A message says a slot is free: run the queued run whose turn it is (scheduling.py), which
    is `run_id` when it is its owner's turn; False (and nothing changed) if no run may start now."""
    worker = worker_name()
    claimed_id = lifecycle.run_claim_next(worker=worker, prefer=run_id)
    if claimed_id is None:
        log_bind(run_id=run_id, user=_owner_name(run_id))
        logger.info("run %s: no queued run may start now; skipping this delivery", run_id)
        lifecycle.run_message_spent(run_id=run_id)
        return False
    if claimed_id != run_id:
        logger.info("run %s's message started run %s, whose turn it was", run_id, claimed_id)
    run_id = claimed_id
    log_bind(run_id=run_id, user=_owner_name(run_id))  # on every line of this task from now on
    logger.info("run %s started on %s", run_id, worker)
    claimed = time.monotonic()
    EXECUTING.set()
    try:
        with _Watch(run_id, worker) as watch:  # renews the lease until the outcome is stored
            fields = _execute(run_id, watch, claimed)
            if watch.lost:
                logger.warning("run %s: not storing its result, the run was already ended", run_id)
            else:
                watch.storing = True
                _store_outcome(run_id, fields)
    finally:
        EXECUTING.clear()
    return True


def _owner_name(run_id: int) -> str | None:
    try:
        return selectors.run_owner_names(run_ids=[run_id]).get(run_id)
    except DatabaseError:
        return None  # the claim that follows says what the database thinks


def _execute(run_id: int, watch: _Watch, claimed: float) -> dict:
    """Run it in a sandbox; the fields it ends with (lifecycle.result_fields or error_fields)."""
    sink: _Sink | None = None
    try:
        run = Run.objects.select_related("submission").get(pk=run_id)
        engine = engine_from_settings()
        engine.check()
        request = exec_request_for(run)
        sink = _Sink(run, watch.cancel)
        result = engine.execute(request, on_output=sink.output, on_metrics=sink.metrics, cancel=watch.cancel)
        # Stored in the UPDATE that ends the run; /metrics builds its histogram from the rows (any host).
        started = lifecycle.sandbox_start_seconds(claimed=claimed, returned=time.monotonic(), result=result)
        boot = {"sandbox_start_seconds": started}
        sink.close()  # every output message is sent before the final status
        if sink.failure is not None:
            return {**lifecycle.error_fields(reason=RunReason.STORAGE_ERROR, detail=sink.failure_detail()), **boot}
        if watch.stopped:
            return {**_stopped_fields(run, result), **boot}
        return {**lifecycle.result_fields(result), **boot}
    except sandbox.EngineUnavailable as exc:
        logger.error("run %s: sandbox unavailable: %s", run_id, exc)
        return lifecycle.error_fields(reason=RunReason.SANDBOX_ERROR, detail=f"sandbox unavailable: {exc}")
    except sandbox.InvalidRequest as exc:
        return lifecycle.error_fields(reason=RunReason.REJECTED, detail=str(exc))
    except ValidationError as exc:  # stored input that no longer passes its checks
        return lifecycle.error_fields(reason=RunReason.REJECTED, detail="; ".join(exc.messages))
    except DatabaseError as exc:  # reading the run, its submission or a storage write failed
        logger.error("run %s: the database failed while running it: %s", run_id, exc)
        return lifecycle.error_fields(
            reason=RunReason.STORAGE_ERROR,
            detail="our database failed while this run was being prepared or run; this is our fault: run it again",
        )
    except Exception:
        logger.exception("run %s: sandbox failed", run_id)
        return lifecycle.error_fields(
            reason=RunReason.SANDBOX_ERROR, detail="the sandbox failed unexpectedly; this is our fault"
        )
    finally:
        if sink is not None:
            sink.close()


def _stopped_fields(run: Run, result: sandbox.ExecResult) -> dict:
    if result.reason != sandbox.Reason.CANCELLED:
        return lifecycle.result_fields(result)  # it ended on its own as the grace ran out
    fields = lifecycle.result_fields(result)
    fields.update(
        status=RunStatus.ERROR,
        reason=RunReason.WORKER_LOST,
        exit_code=None,
        detail=(
            f"the worker was stopped, and this run did not finish within the "
            f"{settings.CRUCIBLE_STOP_GRACE_SECONDS:g} s it was given; the output printed until then is "
            "kept. Run it again."
        ),
    )
    return fields


def _store_outcome(run_id: int, fields: dict) -> None:
    """Store how the run ended, retrying while the database fails; past the retry time, hand it to
    the reconciler through Redis (it stores it once it can)."""
    deadline = time.monotonic() + settings.CRUCIBLE_FINAL_WRITE_RETRY_SECONDS
    delay = 0.2
    while True:
        try:
            if lifecycle.run_end(run_id=run_id, fields=fields):
                # Status and reason only: a run's detail may quote the user's files.
                logger.info("run %s ended: %s (%s)", run_id, fields["status"], fields.get("reason") or "-")
            else:
                logger.warning("run %s was no longer running when its result arrived", run_id)
            return
        except DatabaseError as exc:
            connection.close()
            if time.monotonic() + delay > deadline:
                logger.error("run %s: could not store its result (%s); handing it to the reconciler", run_id, exc)
                break
            logger.warning("run %s: could not store its result (%s); retrying in %.1f s", run_id, exc, delay)
            time.sleep(delay)
            delay = min(2.0, delay * 2)
    try:
        broker.result_hand_over(run_id, fields)
    except Exception:
        logger.exception("run %s: could not hand its result over either; it will end as worker_lost", run_id)
