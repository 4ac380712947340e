"""The engine interface and the registry that finds engines by name, importing them lazily."""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandbox.contract import ExecRequest, ExecResult, OutputCallback
from sandbox.errors import EngineUnavailable


@dataclass(frozen=True)
class MetricSample:
    elapsed_seconds: float
    cpu_seconds: float | None
    memory_bytes: int | None
    # Tasks (processes plus threads) of the user's program, as `Limits.processes` counts them;
    # None until the engine has a first reading.
    processes: int | None


MetricsCallback = Callable[[MetricSample], None]


@dataclass(frozen=True)
class EngineConfig:
    """Everything an engine needs, passed in: the sandbox layer reads no settings or environment."""

    images_dir: Path
    state_dir: Path
    runsc_path: str = "runsc"
    platform: str = "auto"  # systrap when this runsc has it, else ptrace
    cgroup_parent: str = "crucible"
    # The subprocess engine is NOT a sandbox; it refuses to run unless this is set (development only).
    allow_subprocess: bool = False
    # The dockerd the docker engine talks to (it must have runsc registered as a runtime).
    docker_url: str = "unix:///var/run/docker.sock"
    # The runsc engine keeps launchers already inside the next runs' cgroups (sandbox/launcher.py):
    # one idle `sh` and an empty cgroup per run it has had at once. Off, each run starts its own.
    warm_launchers: bool = True

    def __post_init__(self) -> None:
        # Paths end up in OCI bundles and docker mounts, which resolve nothing relative: a relative
        # images_dir made every run fail with runsc's opaque "cannot read client sync file: EOF".
        object.__setattr__(self, "images_dir", Path(self.images_dir).absolute())
        object.__setattr__(self, "state_dir", Path(self.state_dir).absolute())


class ExecutionEngine(ABC):
    name: str

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    @abstractmethod
    def check(self) -> None:
        """Raise EngineUnavailable (saying how to fix it) if this engine cannot run here."""

    @abstractmethod
    def execute(
        self,
        request: ExecRequest,
        *,
        on_output: OutputCallback | None = None,
        on_metrics: MetricsCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        """Run `request` to completion and return its result.

        Limits, timeouts, cancellation and a crash of the user's code are all reported in the
        result. Raises EngineUnavailable or SandboxError only for infrastructure faults.
        """

    def sweep(self) -> None:
        """Remove what earlier, killed workers left behind. Safe while other runs are live."""
        return None

    def close(self) -> None:
        """Release what the engine keeps between runs (the runsc engine's warm launchers)."""
        return None


_ENGINES = {
    "runsc": "sandbox.runsc:RunscEngine",
    "docker": "sandbox.docker.engine:DockerEngine",
    "subprocess": "sandbox.subprocess_engine:SubprocessEngine",
}


def engine_names() -> list[str]:
    return sorted(_ENGINES)


def get_engine(name: str, config: EngineConfig) -> ExecutionEngine:
    try:
        target = _ENGINES[name]
    except KeyError:
        raise EngineUnavailable(f"unknown sandbox engine {name!r}; available: {', '.join(engine_names())}") from None
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(config)
