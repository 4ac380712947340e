"""The worker side of a run: Run row → sandbox.ExecRequest → engine → services.run_finish.

Every outcome ends the run (any exception here is ours: error/sandbox_error). Output and samples go
to the log store and the run's group while it runs; a watcher turns a cancel request into the
engine's cancel event.
"""

from __future__ import annotations

import logging
import threading

from django.core.exceptions import ValidationError
from django.db import connection

import sandbox
from evaluations.live.publisher import RunPublisher
from evaluations.models import Run, RunReason
from evaluations.runs import services
from evaluations.runs.engines import engine_from_settings
from evaluations.runs.validation import project_files

logger = logging.getLogger(__name__)

CANCEL_POLL_SECONDS = 0.2


def exec_request_for(run: Run) -> sandbox.ExecRequest:
    limits = sandbox.Limits(
        wall_seconds=run.wall_seconds,
        memory_bytes=run.memory_bytes,
        tmp_bytes=min(sandbox.Limits.tmp_bytes, run.memory_bytes // 2),
        stdout_bytes=run.stdout_limit_bytes,
        stderr_bytes=run.stderr_limit_bytes,
    )
    sub = run.submission
    if sub.archive is not None:
        files = project_files(archive=bytes(sub.archive), archive_name=sub.archive_name, entrypoint=sub.entrypoint)
    else:
        files = {sub.entrypoint: sub.code.encode("utf-8")}
    return sandbox.ExecRequest(
        files=files,
        entrypoint=sub.entrypoint,
        argv=tuple(sub.argv),
        stdin=sub.stdin.encode("utf-8"),
        limits=limits,
    )


class _CancelWatcher:
    """Polls the run's cancel flag from a thread of its own and sets the engine's cancel event."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.event = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"run-{run_id}-cancel", daemon=True)

    def __enter__(self) -> threading.Event:
        self._thread.start()
        return self.event

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _watch(self) -> None:
        try:
            while not self._stop.wait(CANCEL_POLL_SECONDS):
                if services.run_cancel_requested(run_id=self.run_id):
                    self.event.set()
                    return
        except Exception:
            logger.exception("run %s: cancel watcher failed", self.run_id)
        finally:
            connection.close()  # this thread's own database connection


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


def run_in_sandbox(run_id: int) -> bool:
    """Run it if it is still queued; False (and nothing changed) if another delivery has it."""
    if not services.run_claim(run_id=run_id):
        logger.info("run %s is not queued; skipping this delivery", run_id)
        services.run_lost_check_schedule(run_id=run_id)
        return False
    publisher: RunPublisher | None = None
    try:
        run = Run.objects.select_related("submission").get(pk=run_id)
        engine = engine_from_settings()
        engine.check()
        request = exec_request_for(run)
        publisher = RunPublisher(run)
        pub, samples = publisher, _Samples()
        with _CancelWatcher(run_id) as cancel:
            result = engine.execute(
                request,
                on_output=lambda stream, offset, data: pub.output(stream.value, offset, data),
                on_metrics=lambda sample: pub.metrics(samples(sample)),
                cancel=cancel,
            )
        publisher.close()  # every output message is sent before the final status
        # Inside the try: if even storing the result fails, the run still ends (as error).
        if not services.run_finish(run_id=run_id, result=result):
            logger.warning("run %s was no longer running when its result arrived", run_id)
    except sandbox.EngineUnavailable as exc:
        logger.error("run %s: sandbox unavailable: %s", run_id, exc)
        services.run_fail(run_id=run_id, reason=RunReason.SANDBOX_ERROR, detail=f"sandbox unavailable: {exc}")
    except sandbox.InvalidRequest as exc:
        services.run_fail(run_id=run_id, reason=RunReason.REJECTED, detail=str(exc))
    except ValidationError as exc:  # stored input that no longer passes its checks
        services.run_fail(run_id=run_id, reason=RunReason.REJECTED, detail="; ".join(exc.messages))
    except (SystemExit, KeyboardInterrupt):
        # The worker is being stopped (the engine has already torn the sandbox down). The run is
        # not the user's fault nor finished: queue it again; the redelivered task runs it afresh.
        logger.warning("run %s: worker stopping; the run goes back to the queue", run_id)
        services.run_requeue(run_id=run_id)
        raise
    except BaseException:
        logger.exception("run %s: sandbox failed", run_id)
        services.run_fail(
            run_id=run_id, reason=RunReason.SANDBOX_ERROR, detail="the sandbox failed unexpectedly; this is our fault"
        )
        raise
    finally:
        if publisher is not None:
            publisher.close()
    return True
