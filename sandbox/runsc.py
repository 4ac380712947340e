"""The default engine: one foreground `runsc run` (gVisor) per request, in a cgroup of our own.

Why foreground, why our own cgroup and why RLIMIT_NPROC: docs/sandbox.md, "The runsc engine".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from sandbox import cgroups, workdirs
from sandbox.contract import (
    LIMIT_SPECS,
    ExecRequest,
    ExecResult,
    Limits,
    OutputCallback,
    Stream,
    Timings,
    Usage,
)
from sandbox.engine import EngineConfig, ExecutionEngine, Finding, MetricSample, MetricsCallback
from sandbox.errors import EngineUnavailable
from sandbox.guest_env import GUEST_DIR, GUEST_MOUNT, guest_environment
from sandbox.gvisor import CODE_MOUNT, SANDBOX_UID, SENTRY_OVERHEAD_BYTES, python_command
from sandbox.images import DEFAULT_IMAGE, Image, image_named
from sandbox.janitor import Janitor, Spec
from sandbox.launcher import RUN_PREFIX, Launcher, LauncherPool
from sandbox.pool import CEILING_RLIMITS, INIT_COMMAND, PRELOAD_INIT_COMMAND, PooledSandbox, PoolKey, rlimits
from sandbox.process_count import GuestProcesses, control_socket
from sandbox.pump import POLL_SECONDS, OutputPump
from sandbox.verdict import decide, exec_result, with_teardown

# Pools of booted sandboxes kept at once (per image and /tmp size): runs with other limits boot cold.
MAX_POOL_KEYS = 2
# While the sandbox boots the pump looks for its pid file this often, so timings.boot_seconds is
# exact to this (not to POLL_SECONDS) and the first process count comes early.
BOOT_POLL_SECONDS = 0.005

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "runsc (gVisor) is not installed. On Debian 12: add the bookworm-backports suite and "
    "`apt-get install -t bookworm-backports runsc` (or run `make run`, which does this); "
    "on Debian 13: `apt-get install runsc`."
)


class RunscEngine(ExecutionEngine):
    name = "runsc"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._runsc = shutil.which(config.runsc_path)
        self._version: str | None = None
        self._platform: str | None = None
        # Tears down this process's sandboxes should it die or hang (sandbox/janitor.py).
        self._janitor = Janitor()
        # `runsc run` is started by a launcher already inside the run's cgroup (sandbox/launcher.py).
        self._launchers = LauncherPool(self._new_launcher, warm=config.warm_launchers)
        # Booted sandboxes per PoolKey, most recently used last (sandbox/pool.py).
        self._pools: dict[PoolKey, LauncherPool] = {}
        self._pools_lock = threading.Lock()

    # -- environment -----------------------------------------------------------------------------

    def check(self) -> None:
        if self._runsc is None:
            raise EngineUnavailable(INSTALL_HINT)
        if os.geteuid() != 0:
            raise EngineUnavailable(
                "the runsc engine runs as root here: without root, runsc silently ignores the "
                "memory and CPU limits (rootless mode), so Crucible refuses to run"
            )
        cgroups.layout()
        image_named(self.config.images_dir, DEFAULT_IMAGE)

    def runtime_version(self) -> str:
        if self._version is None:
            self.check_binary()
            out = subprocess.run([self._runsc, "--version"], capture_output=True, text=True)  # type: ignore[list-item]
            self._version = (out.stdout.splitlines() or ["runsc unknown"])[0].strip()
        return self._version

    def platform(self) -> str:
        if self._platform is None:
            if self.config.platform != "auto":
                self._platform = self.config.platform
            else:
                self.check_binary()
                out = subprocess.run([self._runsc, "flags"], capture_output=True, text=True)  # type: ignore[list-item]
                self._platform = "systrap" if "systrap" in out.stdout + out.stderr else "ptrace"
        return self._platform

    def host_findings(self) -> list[Finding]:
        return [cgroups.layout_finding()]  # each run's cgroup is ours to make and read

    def check_binary(self) -> None:
        if self._runsc is None:
            raise EngineUnavailable(INSTALL_HINT)

    # -- running ---------------------------------------------------------------------------------

    def execute(
        self,
        request: ExecRequest,
        *,
        on_output: OutputCallback | None = None,
        on_metrics: MetricsCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        self.check_binary()
        image = image_named(self.config.images_dir, request.image)
        pool = self._pool(PoolKey.of(request, preloading=self.config.pool_preload))
        launcher = pool.take_warm() if pool is not None else None
        if launcher is None:
            launcher = self._launchers.take()
        workdir, cgroup = launcher.workdir, launcher.cgroup
        try:
            if isinstance(launcher, PooledSandbox):
                workdirs.write_code(workdir, request, reader=SANDBOX_UID)  # into its empty, mounted /code
            else:
                self._prepare_bundle(workdir, request, image)
            cgroup.set_limits(
                memory_bytes=request.limits.memory_bytes + SENTRY_OVERHEAD_BYTES,
                cpu_cores=request.limits.cpu_cores,
            )
            run = _Run(self, launcher, request, on_output, on_metrics, cancel)
            result = run.wait()
            teardown_start = time.monotonic()
            self._teardown(launcher.run_id, workdir, cgroup)
            return with_teardown(result, time.monotonic() - teardown_start, image.digest)
        except BaseException:
            self._teardown(launcher.run_id, workdir, cgroup)
            launcher.discard()  # a launcher never told to go is still waiting; its pipes are ours
            raise
        finally:
            launcher.lock.close()
            self._janitor.remove(launcher.run_id)
            if pool is not None:
                pool.done()
            if not isinstance(launcher, PooledSandbox):
                self._launchers.done()

    def prepare(self, request: ExecRequest) -> None:
        pool = self._pool(PoolKey.of(request, preloading=self.config.pool_preload))
        if pool is not None:
            pool.prefill(self.config.pool_size)

    def close(self) -> None:
        """End the warm launchers and pooled sandboxes (their cgroups and work dirs go with them),
        and an idle janitor."""
        self._launchers.close()
        with self._pools_lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
        self._janitor.close()

    def warm_run_ids(self) -> list[str]:
        """Run ids whose work dir and cgroup belong to a warm launcher or a pooled sandbox, not to a run (yet)."""
        with self._pools_lock:
            pools = list(self._pools.values())
        return self._launchers.warm_ids() + [run_id for pool in pools for run_id in pool.warm_ids()]

    def _new_launcher(self) -> Launcher:
        self.check_binary()
        return Launcher(self.config.state_dir, self._cgroup_parent(), self.runsc_flags(), self._janitor)

    def _pool(self, key: PoolKey) -> LauncherPool | None:
        """The pool of sandboxes booted for `key`; the least recently used of more than
        MAX_POOL_KEYS pools is closed. None with pooling off."""
        if self.config.pool_size <= 0:
            return None
        with self._pools_lock:
            pool = self._pools.pop(key, None) or LauncherPool(
                lambda: self._new_pooled(key), limit=self.config.pool_size, room=self._pool_has_room
            )
            self._pools[key] = pool
            evicted = list(self._pools)[:-MAX_POOL_KEYS]
            old = [self._pools.pop(k) for k in evicted]
        for p in old:
            p.close()
        return pool

    def _cgroup_parent(self) -> str:
        # Weighed again for each sandbox: a parent removed meanwhile would come back at full weight.
        cgroups.parent_weigh(self.config.cgroup_parent, self.config.sandboxes_cpu_weight)
        return self.config.cgroup_parent

    def _pool_has_room(self) -> bool:
        """Room under pool_memory_bytes for one more pooled sandbox, as large as the largest idle one."""
        with self._pools_lock:
            ids = [run_id for pool in self._pools.values() for run_id in pool.warm_ids()]
        usage = [cgroups.RunCgroup(self.config.cgroup_parent, run_id).stats().memory_bytes or 0 for run_id in ids]
        return sum(usage) + max(usage, default=0) <= self.config.pool_memory_bytes

    def _new_pooled(self, key: PoolKey) -> PooledSandbox:
        self.check_binary()
        rootfs = image_named(self.config.images_dir, key.image).rootfs
        return PooledSandbox(
            self.config.state_dir,
            self._cgroup_parent(),
            self.runsc_flags(),
            self._janitor,
            key=key,
            spec=lambda code: pooled_oci_spec(key, rootfs, code),
            max_age=self.config.pool_max_age_seconds,
        )

    def _prepare_bundle(self, workdir: Path, request: ExecRequest, image: Image) -> None:
        # The sandbox's user reads its code as the owner; the work dir stays the worker's (0700).
        code = workdirs.write_code(workdir, request, reader=SANDBOX_UID)
        workdirs.write_private(workdir / "stdin", request.stdin)
        (workdir / "state").mkdir(mode=0o700)
        workdirs.write_private(workdir / "config.json", json.dumps(oci_spec(request, image.rootfs, code)).encode())

    def runsc_flags(self) -> list[str]:
        """runsc and its global flags, less --root (each run has a state dir of its own)."""
        assert self._runsc is not None
        return [
            self._runsc,
            "--network=none",
            "--ignore-cgroups",
            "--overlay2=none",
            f"--platform={self.platform()}",
        ]

    def runsc_command(self, workdir: Path, run_id: str, *args: str) -> list[str]:
        runsc, *flags = self.runsc_flags()
        return [runsc, "--root", str(workdir / "state"), *flags, *args]

    def kill(self, workdir: Path, run_id: str) -> None:
        subprocess.run(
            self.runsc_command(workdir, run_id, "kill", "--all", run_id, "KILL"),
            capture_output=True,
            timeout=5,
        )

    def _teardown(self, run_id: str, workdir: Path, cgroup: cgroups.RunCgroup) -> None:
        teardown(self.runsc_flags(), run_id, workdir, cgroup)

    def sweep(self) -> None:
        """Delete sandboxes, work dirs and cgroups of runs whose worker died (their lock is free)."""
        state_dir, parent = self.config.state_dir, self.config.cgroup_parent

        def remove(workdir: Path) -> None:
            with contextlib.suppress(EngineUnavailable):
                self._teardown(workdir.name, workdir, cgroups.RunCgroup(parent, workdir.name))

        live = workdirs.sweep(state_dir, RUN_PREFIX, remove)
        for name in cgroups.leftover_names(parent):
            if name.startswith(RUN_PREFIX) and name not in live and not (state_dir / name).exists():
                # No work dir here: it may be a live run of an engine with another state dir, so
                # only an empty cgroup old enough to have been joined is removed, and nothing is killed.
                cg = cgroups.RunCgroup(parent, name)
                if not cg.pids_inside() and cg.age() >= cgroups.ORPHAN_MIN_AGE_SECONDS:
                    cg.remove(timeout=0)


def teardown(runsc_flags: list[str], run_id: str, workdir: Path, cgroup: cgroups.RunCgroup) -> None:
    """Delete the run's sandbox, kill what is left in its cgroup, remove the cgroup and the work dir."""
    # A foreground `runsc run` that ended by itself leaves its state dir empty, and a delete
    # would cost time for nothing; a killed or crashed one leaves state that must go.
    state = workdir / "state"
    if state.is_dir() and any(state.iterdir()):
        runsc, *flags = runsc_flags
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                [runsc, "--root", str(state), *flags, "delete", "--force", run_id],
                capture_output=True,
                timeout=10,
            )
    cgroup.kill_all()
    cgroup.remove()
    shutil.rmtree(workdir, ignore_errors=True)


def clean_up(run_id: str, spec: Spec) -> None:
    """The janitor's teardown of a run whose owner died or overran (sandbox/janitor.py)."""
    # Every process of the sandbox is in its cgroup, so killing them all leaves runsc's state dir
    # as mere files: `runsc delete` would only spend its timeouts finding the sandbox gone.
    cgroup = cgroups.RunCgroup(spec["cgroup_parent"], run_id)
    cgroup.kill_all()
    cgroup.remove(timeout=5)  # kills again what was still forking
    shutil.rmtree(spec["workdir"], ignore_errors=True)


class _Run:
    """One live `runsc run`, driven by the shared OutputPump; builds the ExecResult."""

    def __init__(
        self,
        engine: RunscEngine,
        launcher: Launcher,
        request: ExecRequest,
        on_output: OutputCallback | None,
        on_metrics: MetricsCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.engine, self.launcher, self.request = engine, launcher, request
        self.run_id, self.workdir, self.cgroup = launcher.run_id, launcher.workdir, launcher.cgroup
        self.on_output, self.on_metrics, self.cancel = on_output, on_metrics, cancel
        self.pidfile = self.workdir / "runsc.pid"
        self.booted_at: float | None = None
        self.guest = GuestProcesses(
            engine.runsc_command(self.workdir, self.run_id, "events", "--stats", self.run_id),
            request.limits.processes,
            socket_path=control_socket(self.workdir / "state", self.run_id),
            container_id=self.run_id,
        )

    def wait(self) -> ExecResult:
        proc = self.launcher.proc
        limits = self.request.limits
        # From now on the janitor tears the sandbox down by itself should this process hang.
        self.engine._janitor.deadline(self.run_id, limits.wall_seconds + self.engine.config.backstop_grace_seconds)
        started = time.monotonic()
        try:
            if isinstance(self.launcher, PooledSandbox):
                self.cgroup.start_accounting()  # what the sandbox used while booted idle is not the run's
                self.launcher.start(self.request)
                self.booted_at = started
                self.guest.booted(started)
            else:
                self.launcher.go()
            logger.info("sandbox %s started", self.run_id)
        except OSError:
            pass  # the launcher died: it has exited (125) and the run ends as "did not start"
        assert proc.stdout is not None and proc.stderr is not None
        pump = OutputPump(
            stdout=proc.stdout.fileno(),
            stderr=proc.stderr.fileno(),
            exited=lambda: proc.poll() is not None,
            kill=self._kill,
            force_kill=self.cgroup.kill_all,
            wall_seconds=limits.wall_seconds,
            stdout_cap=limits.stdout_bytes,
            stderr_cap=limits.stderr_bytes,
            on_output=self.on_output,
            on_metrics=self.on_metrics,
            sample=self._sample,
            cancel=self.cancel,
            tick=lambda now: self._tick(now, pump),
            started=started,
        )
        pump.poll_seconds = BOOT_POLL_SECONDS  # until the pid file shows the sandbox is up
        try:
            pump.run()
        finally:
            if proc.poll() is None:
                pump.kill(None)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            self.guest.finish()
            for f in (proc.stdout, proc.stderr):
                f.close()
        ended = time.monotonic()
        stats = self.cgroup.stats()
        return self._result(pump, proc.returncode, stats, started, ended)

    def _tick(self, now: float, pump: OutputPump) -> None:
        if self.booted_at is None and self.pidfile.exists():
            self.booted_at = now
            self.guest.booted(now)
            pump.poll_seconds = POLL_SECONDS
        self.guest.poll(now, launch=pump.killed_at is None)

    def _sample(self, elapsed: float) -> MetricSample:
        s = self.cgroup.stats()
        return MetricSample(elapsed, s.cpu_seconds, s.memory_bytes, self.guest.counts.latest)

    def _kill(self) -> None:
        try:
            self.engine.kill(self.workdir, self.run_id)
        except (subprocess.SubprocessError, OSError):
            self.cgroup.kill_all()

    def _result(
        self, pump: OutputPump, returncode: int, stats: cgroups.CgroupStats, started: float, ended: float
    ) -> ExecResult:
        counts = self.guest.counts  # see sandbox/process_count.py for what they can tell
        tail = bytes(pump.kept[Stream.STDERR][-2000:]).decode("utf-8", "replace")
        verdict = decide(
            pump=pump,
            limits=self.request.limits,
            counts=counts,
            returncode=returncode,
            ended=ended,
            out_of_memory=stats.oom_killed,
            started=self.booted_at is not None or self.pidfile.exists(),
            start_failure=f"the sandbox did not start (runsc exit {returncode}): {tail}",
            pids_backstop_hit=stats.pids_limit_hit,
        )
        return exec_result(
            self.engine,
            pump,
            verdict,
            returncode=returncode,
            usage=Usage(
                cpu_seconds=stats.cpu_seconds, peak_memory_bytes=stats.peak_memory_bytes, peak_processes=counts.peak
            ),
            timings=Timings(
                boot_seconds=None if self.booted_at is None else self.booted_at - started,
                run_seconds=ended - started,
                pooled=isinstance(self.launcher, PooledSandbox),
            ),
        )


def oci_spec(request: ExecRequest, rootfs: Path, code_dir: Path) -> dict[str, Any]:
    limits = request.limits
    env = guest_environment(request, home="/tmp", guest_dir=GUEST_MOUNT)
    return {
        "ociVersion": "1.0.0",
        "process": {
            "terminal": False,
            "user": {"uid": SANDBOX_UID, "gid": SANDBOX_UID},
            "args": python_command(request),
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": CODE_MOUNT,
            "capabilities": {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")},
            "rlimits": _oci_rlimits(rlimits(limits)),
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "sandbox",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": [f"size={limits.tmp_bytes}", "mode=1777", "nosuid", "nodev"],
            },
            {
                "destination": CODE_MOUNT,
                "type": "bind",
                "source": str(code_dir),
                "options": ["ro", "rbind", "nosuid", "nodev"],
            },
            {
                "destination": GUEST_MOUNT,
                "type": "bind",
                "source": str(GUEST_DIR),
                "options": ["ro", "rbind", "nosuid", "nodev"],
            },
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        },
    }


def pooled_oci_spec(key: PoolKey, rootfs: Path, code_dir: Path) -> dict[str, Any]:
    """A pooled sandbox's bundle: the run's spec, but PID 1 is crucible-init with the highest limits
    and only the fixed part of every program's environment; it applies the run's own when the job
    comes (sandbox/pool.py)."""
    limits = Limits(memory_bytes=int(LIMIT_SPECS["memory_bytes"].maximum), tmp_bytes=key.tmp_bytes)
    spec = oci_spec(ExecRequest(files={"main.py": b""}, image=key.image, limits=limits), rootfs, code_dir)
    spec["process"]["args"] = PRELOAD_INIT_COMMAND if key.preload else INIT_COMMAND
    spec["process"]["rlimits"] = _oci_rlimits(CEILING_RLIMITS)
    return spec


def _oci_rlimits(pairs: list[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"type": kind, "hard": value, "soft": value} for kind, value in pairs]
