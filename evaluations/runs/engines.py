"""The sandbox engine a worker process uses, built from settings and kept between runs."""

from __future__ import annotations

import logging
import threading

from django.conf import settings

import sandbox
from evaluations.models import Submission

logger = logging.getLogger(__name__)


def run_tmp_bytes(memory_bytes: int) -> int:
    """A run's /tmp size: it lives in the sandbox's memory, so at most half the memory limit."""
    return min(sandbox.Limits.tmp_bytes, memory_bytes // 2)


def prepare_engine() -> None:
    """Have the engine ready for a run with the site's defaults (a pooled sandbox booting)."""
    memory = settings.CRUCIBLE_DEFAULT_MEMORY_MB * sandbox.MiB
    limits = sandbox.Limits(memory_bytes=memory, tmp_bytes=run_tmp_bytes(memory))
    default = Submission._meta.get_field("preload").default
    engine_from_settings().prepare(sandbox.ExecRequest(files={"main.py": b""}, limits=limits, preload=default))


def engine_from_settings() -> sandbox.ExecutionEngine:
    config = sandbox.EngineConfig(
        images_dir=settings.CRUCIBLE_IMAGES_DIR,
        state_dir=settings.CRUCIBLE_SANDBOX_STATE_DIR,
        runsc_path=settings.CRUCIBLE_RUNSC_PATH,
        pool_size=settings.CRUCIBLE_SANDBOX_POOL_SIZE,
        pool_preload=settings.CRUCIBLE_SANDBOX_POOL_PRELOAD,
        sandboxes_cpu_weight=settings.CRUCIBLE_SANDBOXES_CPU_WEIGHT,
        docker_url=settings.CRUCIBLE_DOCKER_URL,
    )
    return _engine(settings.CRUCIBLE_SANDBOX_ENGINE, config)


_engines: dict[tuple[str, sandbox.EngineConfig], sandbox.ExecutionEngine] = {}
_engines_lock = threading.Lock()


def _engine(name: str, config: sandbox.EngineConfig) -> sandbox.ExecutionEngine:
    # One engine per worker process and configuration: it caches the runtime's version and platform
    # and keeps the runsc engine's warm launchers between runs (ended by close_engines()).
    with _engines_lock:
        engine = _engines.get((name, config))
        if engine is None:
            engine = _engines[(name, config)] = sandbox.get_engine(name, config)
        return engine


def close_engines() -> None:
    """End what this process's engines keep between runs (the runsc engine's warm launchers)."""
    with _engines_lock:
        engines = list(_engines.values())
    for engine in engines:
        try:
            engine.close()
        except Exception:
            logger.exception("closing the %s engine failed", engine.name)
