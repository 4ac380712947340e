"""Runs one Run through the sandbox: Run row → sandbox.ExecRequest → engine → services.run_finish.

Every outcome ends the run: limits and exit codes come back in the result, and any exception here
is our fault and ends the run as error/sandbox_error. Nothing leaves a run `running`.
"""

from __future__ import annotations

import functools
import logging

from django.conf import settings

import sandbox
from evaluations import services
from evaluations.models import Run, RunReason

logger = logging.getLogger(__name__)


def engine_from_settings() -> sandbox.ExecutionEngine:
    config = sandbox.EngineConfig(
        images_dir=settings.CRUCIBLE_IMAGES_DIR,
        state_dir=settings.CRUCIBLE_SANDBOX_STATE_DIR,
        runsc_path=settings.CRUCIBLE_RUNSC_PATH,
    )
    return _engine(settings.CRUCIBLE_SANDBOX_ENGINE, config)


@functools.lru_cache(maxsize=8)
def _engine(name: str, config: sandbox.EngineConfig) -> sandbox.ExecutionEngine:
    # One engine per worker process and configuration: it caches the runtime's version and platform.
    return sandbox.get_engine(name, config)


def exec_request_for(run: Run) -> sandbox.ExecRequest:
    limits = sandbox.Limits(
        wall_seconds=run.wall_seconds,
        memory_bytes=run.memory_bytes,
        tmp_bytes=min(sandbox.Limits.tmp_bytes, run.memory_bytes // 2),
        stdout_bytes=run.stdout_limit_bytes,
        stderr_bytes=run.stderr_limit_bytes,
    )
    return sandbox.ExecRequest(files={"main.py": run.submission.code.encode("utf-8")}, limits=limits)


def run_execute(run_id: int) -> bool:
    """Run it if it is still queued; False (and nothing changed) if another delivery has it."""
    if not services.run_claim(run_id=run_id):
        logger.info("run %s is not queued; skipping this delivery", run_id)
        return False
    try:
        run = Run.objects.select_related("submission").get(pk=run_id)
        engine = engine_from_settings()
        engine.check()
        result = engine.execute(exec_request_for(run))
    except sandbox.EngineUnavailable as exc:
        logger.error("run %s: sandbox unavailable: %s", run_id, exc)
        services.run_fail(run_id=run_id, reason=RunReason.SANDBOX_ERROR, detail=f"sandbox unavailable: {exc}")
    except sandbox.InvalidRequest as exc:
        services.run_fail(run_id=run_id, reason=RunReason.REJECTED, detail=str(exc))
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
    else:
        if not services.run_finish(run_id=run_id, result=result):
            logger.warning("run %s was no longer running when its result arrived", run_id)
    return True
