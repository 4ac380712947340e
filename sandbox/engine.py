"""The engine interface and the registry that finds engines by name, importing them lazily."""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

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

# cgroup v2's cpu.weight scale (a process weighs 100), for EngineConfig.sandboxes_cpu_weight.
CPU_WEIGHTS = range(1, 10_001)


@dataclass(frozen=True)
class EngineConfig:
    """Everything an engine needs, passed in: the sandbox layer reads no settings or environment."""

    images_dir: Path
    state_dir: Path
    runsc_path: str = "runsc"
    platform: str = "auto"  # systrap when this runsc has it, else ptrace
    cgroup_parent: str = "crucible"
    # The CPU scheduler's weight of all the engine's sandboxes together, on cgroup v2's scale (each
    # process outside them weighs 100): on a busy host the web, the worker and the database go first.
    sandboxes_cpu_weight: int = 10
    # The subprocess engine is NOT a sandbox; it refuses to run unless this is set (development only).
    allow_subprocess: bool = False
    # The dockerd the docker engine talks to (it must have runsc registered as a runtime).
    docker_url: str = "unix:///var/run/docker.sock"
    # The runsc engine keeps launchers already inside the next runs' cgroups (sandbox/launcher.py):
    # one idle `sh` and an empty cgroup per run it has had at once. Off, each run starts its own.
    warm_launchers: bool = True
    # The runsc engine keeps this many sandboxes booted per image and /tmp size, each for exactly one
    # run (sandbox/pool.py): a run then skips the boot. 0 turns pooling off.
    pool_size: int = 2
    # Requests with `preload` take pooled sandboxes that imported common modules before their run and
    # run the program in that interpreter (sandbox/guest/crucible-init). Off, they boot as others do.
    pool_preload: bool = True
    # A pooled sandbox idle this long is replaced rather than given to a run.
    pool_max_age_seconds: float = 600.0
    # No more are booted while the engine's idle pooled sandboxes use this much memory (their cgroups').
    pool_memory_bytes: int = 256 * 1024 * 1024
    # A run still there this long after its wall-time limit is torn down by the engine's janitor
    # process, even while the worker that started it hangs (sandbox/janitor.py).
    backstop_grace_seconds: float = 10.0

    def __post_init__(self) -> None:
        # Paths end up in OCI bundles and docker mounts, which resolve nothing relative: a relative
        # images_dir made every run fail with runsc's opaque "cannot read client sync file: EOF".
        object.__setattr__(self, "images_dir", Path(self.images_dir).absolute())
        object.__setattr__(self, "state_dir", Path(self.state_dir).absolute())
        if self.sandboxes_cpu_weight not in CPU_WEIGHTS:
            raise ValueError(f"sandboxes_cpu_weight must be 1 to 10000, not {self.sandboxes_cpu_weight}")


@dataclass(frozen=True)
class Finding:
    """One step of the self-check (`python -m sandbox doctor`): what was checked, and how it went."""

    name: str
    ok: bool
    text: str


class ExecutionEngine(ABC):
    """Runs ExecRequests in sandboxes of one kind; `get_engine` finds an engine by its `name`.

    One instance serves a whole worker process: `execute` may be called from several threads at once.
    """

    name: ClassVar[str]

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    @abstractmethod
    def check(self) -> None:
        """Check that this engine can run sandboxes on this machine, without running one.

        Raises:
            EngineUnavailable: the runtime, root, cgroups or daemon it needs is missing; the message
                says how to fix it.
            ImageError: the default image is not built; the message names the command that builds it.
        """

    @abstractmethod
    def runtime_version(self) -> str:
        """Name and version of what runs the sandboxes, as results report it (cached after the first call).

        Raises:
            EngineUnavailable: the runtime is not installed.
        """

    def platform(self) -> str:
        """The gVisor platform the sandboxes run on (systrap, ptrace); "" where that does not apply."""
        return ""

    def host_findings(self) -> list[Finding]:
        """What the self-check looks at on this host besides `check()`, e.g. the cgroup layout.

        Returns:
            One Finding per thing checked, in order; empty if the engine has nothing more to check.
        """
        return []

    @abstractmethod
    def execute(
        self,
        request: ExecRequest,
        *,
        on_output: OutputCallback | None = None,
        on_metrics: MetricsCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        """Run `request` in a fresh sandbox to completion, and tear the sandbox down.

        Limits, timeouts, cancellation and a crash of the user's code are reported in the result,
        never raised. Callbacks run on the calling thread.

        Args:
            request: what to run, with its limits.
            on_output: called with (stream, offset, chunk) as output arrives, in chunks.
            on_metrics: called with a MetricSample about every half second while the program runs.
            cancel: set it to stop the run; the result is then `cancelled`.

        Returns:
            The result; its status and reason say how the run ended.

        Raises:
            InvalidRequest: the request names an image the engine does not know.
            ImageError: the image is not built.
            EngineUnavailable: the engine cannot run here (see `check`).
            SandboxError: the sandbox infrastructure failed, not the user's code.
            Exception: whatever `on_output` or `on_metrics` raised, once the sandbox is torn down.
        """

    def sweep(self) -> None:
        """Remove the sandboxes, work dirs and cgroups that dead workers' runs of this engine left.

        A run whose worker is alive is spared, so this is safe while other workers run, and cheap
        enough to call every half minute or so.

        Raises:
            EngineUnavailable: the engine cannot reach what it would clean up (e.g. dockerd).
        """
        return None

    def prepare(self, request: ExecRequest) -> None:
        """Get ready, in the background, for runs like `request` (the runsc engine boots a pooled
        sandbox for them); returns at once. Optional: a run works the same without it."""
        return None

    def close(self) -> None:
        """Release what the engine keeps between runs (the runsc engine's warm launchers).

        The engine still runs requests afterwards, each starting cold.
        """
        return None


_ENGINES = {
    "runsc": "sandbox.runsc:RunscEngine",
    "docker": "sandbox.docker.engine:DockerEngine",
    "subprocess": "sandbox.subprocess_engine:SubprocessEngine",
}


def engine_names() -> list[str]:
    return sorted(_ENGINES)


def get_engine(name: str, config: EngineConfig) -> ExecutionEngine:
    """The engine called `name`, configured with `config`; its module is imported only now.

    Raises:
        EngineUnavailable: no engine has that name.
    """
    try:
        target = _ENGINES[name]
    except KeyError:
        raise EngineUnavailable(f"unknown sandbox engine {name!r}; available: {', '.join(engine_names())}") from None
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(config)
