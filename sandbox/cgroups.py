"""Per-run cgroups that the engine creates, limits and reads itself (v1 hybrid or v2 unified).

runsc removes its own cgroup when it exits, taking the OOM evidence with it, so the engine puts
`runsc run` into a cgroup of its own (and passes --ignore-cgroups) and reads the verdict afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox.engine import Finding
from sandbox.errors import EngineUnavailable

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
# runsc's own threads count against pids.max, several per guest process, and a small limit crashes
# runsc. Processes are limited by RLIMIT_NPROC inside the sandbox; this is only a backstop.
PIDS_BACKSTOP = 8192
CFS_PERIOD_US = 100_000
# A booted sandbox waiting for its run may use this much CPU per period: idle, gVisor's systrap
# platform still burns ~40 ms a second; a kill still takes effect within one period.
HOLD_QUOTA_US = 1000
# An empty run cgroup this young may be another state dir's run whose process has yet to join it.
ORPHAN_MIN_AGE_SECONDS = 10.0


@dataclass(frozen=True)
class CgroupStats:
    cpu_seconds: float | None
    memory_bytes: int | None
    peak_memory_bytes: int | None
    oom_killed: bool
    pids: int | None
    pids_limit_hit: bool


def layout() -> str:
    """'v2', 'v1', or raise EngineUnavailable: checked at run time, machines differ."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return "v2"
    if (CGROUP_ROOT / "memory" / "memory.limit_in_bytes").exists():
        return "v1"
    raise EngineUnavailable(f"no usable cgroup hierarchy under {CGROUP_ROOT}")


def layout_finding() -> Finding:
    """The self-check's finding for engines that make and read each run's cgroup themselves."""
    try:
        return Finding("cgroups", True, layout())
    except EngineUnavailable as exc:
        return Finding("cgroups", False, str(exc))


class RunCgroup:
    """A cgroup for one run under `<parent>/<name>`, created with limits, removed by `remove()`."""

    def __init__(self, parent: str, name: str) -> None:
        self.version = layout()
        self.parent = parent
        self.name = name
        self._cpu_before = 0.0  # CPU seconds spent before start_accounting()
        if self.version == "v1":
            self.dirs = {c: CGROUP_ROOT / c / parent / name for c in V1_CONTROLLERS}
        else:
            self.dirs = {"unified": CGROUP_ROOT / parent / name}

    # -- life cycle ---------------------------------------------------------------------------

    def create(self, *, memory_bytes: int | None = None, cpu_cores: float | None = None) -> None:
        """Make the directories, with the pids backstop; with both limits given, set them too."""
        try:
            if self.version == "v2":
                _enable_v2_controllers(CGROUP_ROOT / self.parent)
            for d in self.dirs.values():
                d.mkdir(parents=True, exist_ok=True)
            if self.version == "v1":
                # Swap would let a run exceed its memory limit silently; forbid it where we can.
                _try_write(self.dirs["memory"] / "memory.swappiness", 0)
                _write(self.dirs["pids"] / "pids.max", PIDS_BACKSTOP)
            else:
                _write(self.dirs["unified"] / "pids.max", PIDS_BACKSTOP)
        except OSError as exc:
            self.remove()
            raise _unusable(exc) from exc
        if memory_bytes is not None and cpu_cores is not None:
            self.set_limits(memory_bytes=memory_bytes, cpu_cores=cpu_cores)

    def set_limits(self, *, memory_bytes: int, cpu_cores: float) -> None:
        """Set the run's memory and CPU limits (once: v1 refuses a swap limit below the memory limit)."""
        quota = max(1000, int(cpu_cores * CFS_PERIOD_US))
        try:
            if self.version == "v1":
                mem = self.dirs["memory"]
                _write(mem / "memory.limit_in_bytes", memory_bytes)
                _try_write(mem / "memory.memsw.limit_in_bytes", memory_bytes)
            else:
                d = self.dirs["unified"]
                _write(d / "memory.max", memory_bytes)
                _try_write(d / "memory.swap.max", 0)
            self._write_cpu_quota(quota)
        except OSError as exc:
            self.remove()
            raise _unusable(exc) from exc

    def hold_cpu(self) -> None:
        """Keep what waits in the cgroup to a trickle of CPU until set_limits() gives the run its own."""
        try:
            self._write_cpu_quota(HOLD_QUOTA_US)
        except OSError as exc:
            raise _unusable(exc) from exc

    def _write_cpu_quota(self, quota_us: int) -> None:
        if self.version == "v1":
            _write(self.dirs["cpu"] / "cpu.cfs_period_us", CFS_PERIOD_US)
            _write(self.dirs["cpu"] / "cpu.cfs_quota_us", quota_us)
        else:
            _write(self.dirs["unified"] / "cpu.max", f"{quota_us} {CFS_PERIOD_US}")

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def pids_inside(self) -> list[int]:
        seen: set[int] = set()
        for f in self.procs_files:
            try:
                seen.update(int(x) for x in Path(f).read_text().split())
            except OSError:
                pass
        return sorted(seen)

    def age(self) -> float:
        """Seconds since the cgroup was made (its directories' newest mtime); 0.0 if it is gone."""
        times = []
        for d in self.dirs.values():
            with contextlib.suppress(OSError):
                times.append(d.stat().st_mtime)
        return time.time() - max(times) if times else 0.0

    def kill_all(self) -> None:
        for pid in self.pids_inside():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self, timeout: float = 2.0) -> None:
        """rmdir every controller's directory; with timeout > 0, kill what is still inside first."""
        deadline = time.monotonic() + timeout
        for d in self.dirs.values():
            while d.exists():
                try:
                    d.rmdir()
                except OSError:
                    if time.monotonic() >= deadline:
                        break
                    self.kill_all()
                    time.sleep(0.02)

    # -- reading --------------------------------------------------------------------------------

    def start_accounting(self) -> None:
        """From now on stats() counts CPU time and peak memory afresh (a pooled sandbox's run starts)."""
        before = self.stats()
        self._cpu_before = before.cpu_seconds or 0.0
        if self.version == "v1":
            _try_write(self.dirs["memory"] / "memory.max_usage_in_bytes", 0)  # resets it to the usage now
        else:
            _try_write(self.dirs["unified"] / "memory.peak", "reset")  # Linux 6.12+; older ones keep the boot's peak

    def stats(self) -> CgroupStats:
        raw = self._raw_stats()
        if self._cpu_before and raw.cpu_seconds is not None:
            raw = dataclasses.replace(raw, cpu_seconds=max(0.0, raw.cpu_seconds - self._cpu_before))
        return raw

    def _raw_stats(self) -> CgroupStats:
        if self.version == "v1":
            mem, cpuacct, pids = self.dirs["memory"], self.dirs["cpuacct"], self.dirs["pids"]
            usage_ns = _read_int(cpuacct / "cpuacct.usage")
            oom = _read_keyed(mem / "memory.oom_control").get("oom_kill", 0)
            return CgroupStats(
                cpu_seconds=None if usage_ns is None else usage_ns / 1e9,
                memory_bytes=_read_int(mem / "memory.usage_in_bytes"),
                peak_memory_bytes=_read_int(mem / "memory.max_usage_in_bytes"),
                oom_killed=oom > 0,
                pids=_read_int(pids / "pids.current"),
                pids_limit_hit=_read_keyed(pids / "pids.events").get("max", 0) > 0,
            )
        d = self.dirs["unified"]
        usage_us = _read_keyed(d / "cpu.stat").get("usage_usec")
        return CgroupStats(
            cpu_seconds=None if usage_us is None else usage_us / 1e6,
            memory_bytes=_read_int(d / "memory.current"),
            peak_memory_bytes=_read_int(d / "memory.peak"),
            oom_killed=_read_keyed(d / "memory.events").get("oom_kill", 0) > 0,
            pids=_read_int(d / "pids.current"),
            pids_limit_hit=_read_keyed(d / "pids.events").get("max", 0) > 0,
        )


def parent_weigh(parent: str, cpu_weight: int) -> None:
    """Make `parent` (if need be) and give the runs under it, together, `cpu_weight` (cgroup v2's
    scale, 1-10000; v1's cpu.shares is 10.24 times it) against each process outside it."""
    try:
        if layout() == "v1":
            cpu = CGROUP_ROOT / "cpu" / parent
            cpu.mkdir(parents=True, exist_ok=True)
            _write(cpu / "cpu.shares", max(2, round(cpu_weight * 1024 / 100)))
        else:
            _enable_v2_controllers(CGROUP_ROOT / parent)
            _write(CGROUP_ROOT / parent / "cpu.weight", cpu_weight)
    except OSError as exc:
        raise _unusable(exc) from exc


def leftover_names(parent: str) -> list[str]:
    """Names of run cgroups under `parent` (for the start-up sweep)."""
    bases = [CGROUP_ROOT / c / parent for c in V1_CONTROLLERS] if layout() == "v1" else [CGROUP_ROOT / parent]
    names: set[str] = set()
    for base in bases:
        try:
            names.update(p.name for p in base.iterdir() if p.is_dir())
        except OSError:
            pass
    return sorted(names)


def _unusable(exc: OSError) -> EngineUnavailable:
    return EngineUnavailable(
        f"cannot create the run's cgroup under {CGROUP_ROOT}: {exc} (the runsc engine needs root and writable cgroups)"
    )


def _enable_v2_controllers(parent: Path) -> None:
    parent.mkdir(parents=True, exist_ok=True)
    for d in (CGROUP_ROOT, parent):
        _try_write(d / "cgroup.subtree_control", "+memory +cpu +pids")


def _write(path: Path, value: object) -> None:
    path.write_text(str(value))


def _try_write(path: Path, value: object) -> None:
    try:
        path.write_text(str(value))
    except OSError:
        pass


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _read_keyed(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            try:
                out[key] = int(value)
            except ValueError:
                pass
    except OSError:
        pass
    return out


def remove_cgroup_dirs(relative: str, *, kill: bool = False, timeout: float = 0.0) -> None:
    """rmdir `relative` and everything below it, deepest first, in every cgroup hierarchy.

    Without `kill`, a directory with a process inside is left alone. With it, those processes are
    SIGKILLed and the removal retried until `timeout`.
    """
    root = CGROUP_ROOT
    bases = [root] if layout() == "v2" else [d for d in root.iterdir() if d.is_dir() and not d.is_symlink()]
    deadline = time.monotonic() + timeout
    while True:
        dirs = [
            Path(dirpath) for base in bases if (base / relative).is_dir() for dirpath, _, _ in os.walk(base / relative)
        ]
        if kill:
            for d in dirs:
                with contextlib.suppress(OSError, ValueError):
                    for pid in (d / "cgroup.procs").read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
        for d in sorted(dirs, key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        if not any((base / relative).exists() for base in bases) or time.monotonic() >= deadline:
            return
        time.sleep(0.02)
