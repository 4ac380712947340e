#!/usr/bin/env python3
"""Sandbox cost: plain python3 vs. a raw `runsc run` vs. the runsc and docker engines.

    .venv/bin/python bench/sandbox.py               # see bench/README.md for how long it takes

One run measures, in this order:

1. Latency, start → exit of `print(1)`, round-robin after warm-up rounds (30 samples of each):
   (a) `/usr/bin/python3 -c 'print(1)'`; (b) a raw foreground `runsc run` of the same program on the
   engine's rootfs with the OCI spec the engine writes (sandbox.runsc.oci_spec), its own --root,
   then `runsc delete --force` (both timed; run-only shown too); (c) the runsc engine's execute();
   (d) the docker engine's execute() (dockerd started with sandbox.docker.daemon as the tests do), or
   "docker: unavailable: <reason>".
2. Throughput of trivial runs per minute at concurrency 1 and 2: threads calling raw runsc / the
   engine's execute() back to back for --throughput-seconds each (in 4 interleaved windows).
3. Memory per idle sandbox: N sandboxes running `time.sleep(30)` through execute() in threads; PSS
   (/proc/<pid>/smaps_rollup) summed over every process in their cgroups, divided by N; then cancelled.
4. An import-heavy script (stdlib; and stdlib + numpy) in the runsc engine vs. the host's python3
   and vs. the image's own python3 run natively (chroot into the same rootfs): median of 10 each.

Targets: median(c) <= 1.1 x median(b) and engine throughput >= 0.9 x raw at concurrency 2. PASS or
FAIL is printed; when a target fails (or with --profile) the engine's time is broken down phase by
phase. Exit 0 either way; 1 only if a measurement itself broke. JSON: bench/results/sandbox.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import os
import random
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"

# Re-run under the project's venv when started with another interpreter (it has the docker SDK).
if Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve() and VENV_PYTHON.exists():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])

# This file is bench/sandbox.py: its own directory must not shadow the `sandbox` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO_ROOT))

sys.path.append(str(Path(__file__).resolve().parent))  # last: bench/sandbox.py must not shadow `sandbox`
from common import (  # noqa: E402
    PYTHON3,
    BenchError,
    attempt,
    loadavg,
    machine_info,
    paired_difference,
    summary,
    summary_row,
    write_result,
)
from raw_runsc import RawRunsc  # noqa: E402

import sandbox.launcher as launcher_module  # noqa: E402
import sandbox.process_count as process_count  # noqa: E402
import sandbox.runsc as runsc_module  # noqa: E402
from sandbox import cgroups  # noqa: E402
from sandbox.contract import ExecRequest, ExecResult, Limits, MiB, Status  # noqa: E402
from sandbox.engine import EngineConfig, ExecutionEngine, get_engine  # noqa: E402
from sandbox.errors import EngineUnavailable, SandboxError  # noqa: E402
from sandbox.guest_env import guest_environment  # noqa: E402
from sandbox.images import DEFAULT_IMAGE, default_recipes, host_suite, load_image  # noqa: E402
from sandbox.runsc import RunscEngine  # noqa: E402

CODE = "print(1)\n"
EXPECTED = b"1\n"
TARGET_LATENCY_RATIO = 1.1
TARGET_THROUGHPUT_RATIO = 0.9
TARGET_IMPORT_RATIO = 2.5  # the engine's wall time over the image's own python3 in a chroot (issue 15)
SLICES = 4  # each throughput measurement is made of this many interleaved windows
IDLE_CODE = "import time\nprint('up', flush=True)\ntime.sleep(30)\n"

_IMPORTS = (
    "json, decimal, asyncio, email.parser, email.mime.multipart, http.client, xml.etree.ElementTree, "
    "sqlite3, unittest, argparse, csv, logging, urllib.request, zipfile, tarfile, statistics, "
    "fractions, dataclasses, typing, pathlib, subprocess"
)
FRESH = "runsc engine, fresh interpreter"  # preload off: the program imports everything itself
STDLIB_SCRIPT = (
    f"import time\nt0 = time.perf_counter()\nimport {_IMPORTS}\nprint(f'{{time.perf_counter() - t0:.6f}}')\n"
)
NUMPY_SCRIPT = STDLIB_SCRIPT.replace(f"import {_IMPORTS}\n", f"import {_IMPORTS}\nimport numpy\n")

# What the sandboxed interpreter gets (minus our sitecustomize), for the native baselines.
# A sandbox that fails a sample is retried like any other failed sample.
RETRY_ON = (BenchError, SandboxError)
NATIVE_ENV = {k: v for k, v in guest_environment(ExecRequest(files={"main.py": b""})).items() if k != "PYTHONPATH"}


def cpu_split() -> tuple[float, float]:
    """(this process, its reaped children): CPU seconds (user + system) so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


# -- (a) host python3 ---------------------------------------------------------------------------------


def host_python(code: str, argv0: list[str] | None = None) -> tuple[float, bytes]:
    start = time.perf_counter()
    proc = subprocess.run([*(argv0 or [PYTHON3]), "-u", "-c", code], capture_output=True, env=NATIVE_ENV)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"{argv0 or PYTHON3}: exit {proc.returncode}, stderr {proc.stderr[-1000:]!r}")
    return took, proc.stdout


def sample_python() -> float:
    took, out = host_python(CODE)
    if out != EXPECTED:
        raise BenchError(f"python3 -c: stdout {out!r}")
    return took


# -- (c), (d) engines ---------------------------------------------------------------------------------


def engine_sample(
    engine: ExecutionEngine,
    code: str = CODE,
    expected: bytes | None = EXPECTED,
    limits: Limits | None = None,
    *,
    preload: bool = True,
) -> ExecResult:
    request = ExecRequest(files={"main.py": code.encode()}, limits=limits or Limits(), preload=preload)
    result = engine.execute(request)
    if result.status is not Status.SUCCEEDED or (expected is not None and result.stdout.data != expected):
        raise BenchError(
            f"{engine.name} engine: {result.status}/{result.reason} {result.detail!r}, "
            f"stdout {result.stdout.data[:200]!r}, stderr {result.stderr.data[-1000:]!r}"
        )
    return result


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def open_docker(
    config: EngineConfig, docker_dir: Path, stack: contextlib.ExitStack
) -> tuple[ExecutionEngine | None, str]:
    """The docker engine with a running dockerd (shared with the tests' one), or (None, why not)."""
    try:
        from sandbox.docker.daemon import PrivateDockerd

        daemon = stack.enter_context(PrivateDockerd(docker_dir).shared())
        engine = get_engine("docker", EngineConfig(**{**config.__dict__, "docker_url": daemon.url}))
        engine.check()  # imports the image into dockerd once per digest
        return engine, ""
    except (EngineUnavailable, SandboxError, ImportError, OSError) as exc:
        return None, str(exc).splitlines()[0][:300]


# -- 2. throughput ------------------------------------------------------------------------------------


def throughput(make_worker: Callable[[int], Callable[[], object]], concurrency: int, seconds: float) -> dict[str, Any]:
    """`concurrency` threads, each running its worker back to back for a window of `seconds`.

    Runs are counted within the window: one still going at its end counts for the fraction of it
    that lies inside (so stopping mid-run biases neither fast nor slow systems).
    """
    workers = [make_worker(i) for i in range(concurrency)]
    spans: list[tuple[float, float]] = []
    errors: list[str] = []
    start = time.perf_counter()
    deadline = start + seconds

    def loop(i: int) -> None:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                workers[i]()
            except Exception as exc:  # noqa: BLE001 - recorded and reported as a broken measurement
                errors.append(f"{type(exc).__name__}: {str(exc)[:500]}")
                return
            spans.append((t, time.perf_counter()))

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise BenchError(errors[0])
    credit = sum(min(1.0, (deadline - a) / (b - a)) for a, b in spans)
    return {"runs": credit, "completed": len(spans), "seconds": seconds, "latencies": [b - a for a, b in spans]}


def merge_throughput(parts: list[dict[str, Any]]) -> dict[str, Any]:
    runs = sum(p["runs"] for p in parts)
    seconds = sum(p["seconds"] for p in parts)
    lat = [x for p in parts for x in p["latencies"]]
    return {
        "runs_in_window": round(runs, 2),
        "completed": sum(p["completed"] for p in parts),
        "seconds": round(seconds, 2),
        "runs_per_min": round(runs / seconds * 60, 1),
        "median_latency_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
    }


# -- 3. memory of idle sandboxes ----------------------------------------------------------------------


def cgroup_procs(relative: str) -> set[int]:
    """Every process in cgroup `relative` and below it (memory hierarchy on v1, unified on v2)."""
    base = cgroups.CGROUP_ROOT / relative if cgroups.layout() == "v2" else cgroups.CGROUP_ROOT / "memory" / relative
    pids: set[int] = set()
    for dirpath, _, files in os.walk(base):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(x) for x in Path(dirpath, "cgroup.procs").read_text().split())
    return pids


def memory_of(pid: int) -> dict[str, int] | None:
    """Pss and Rss (bytes) from /proc/<pid>/smaps_rollup, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Pss", "Rss"):
            out[key.lower()] = int(rest.split()[0]) * 1024
    return out


def process_kind(pid: int) -> str:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
    if not args or not args[0]:
        return f"[{comm}] (no cmdline: systrap stub)"
    name = os.path.basename(args[0].decode(errors="replace"))
    words = [a.decode(errors="replace") for a in args[1:]]
    for verb in ("boot", "gofer", "run", "create", "start", "events", "delete"):
        if verb in words:
            return f"{name} {verb}"
    return name


def docker_shims(container_ids: set[str]) -> set[int]:
    """containerd shims serving these containers (they live outside the container's cgroup)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and b"containerd-shim" in args[0] and any(a.decode(errors="replace") in container_ids for a in args):
            found.add(int(entry.name))
    return found


def idle_memory(engine: ExecutionEngine, cgroup_parent: str, n: int, timeout: float = 60.0) -> dict[str, Any]:
    """Start n sandboxes that sleep, measure the processes in their cgroups, cancel them."""
    request = ExecRequest(files={"main.py": IDLE_CODE.encode()}, limits=Limits(wall_seconds=60.0))
    cancels = [threading.Event() for _ in range(n)]
    up = [threading.Event() for _ in range(n)]
    results: list[ExecResult | BaseException | None] = [None] * n

    def go(i: int) -> None:
        try:
            results[i] = engine.execute(request, on_output=lambda s, o, c: up[i].set(), cancel=cancels[i])
        except BaseException as exc:  # noqa: BLE001
            results[i] = exc
            up[i].set()

    def warm_ids() -> set[str]:  # a warm launcher's cgroup is made before its run (sandbox/launcher.py)
        return set(engine.warm_run_ids()) if isinstance(engine, RunscEngine) else set()

    before = set(cgroups.leftover_names(cgroup_parent)) - warm_ids()
    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + timeout
        for ev in up:
            if not ev.wait(max(0.0, deadline - time.monotonic())):
                raise BenchError(f"{engine.name}: idle sandboxes did not print 'up' within {timeout:g}s")
        for r in results:
            if isinstance(r, BaseException) or r is not None:
                raise BenchError(f"{engine.name}: an idle sandbox ended early: {r!r}")
        time.sleep(2.0)  # let start-up settle (the first process-count queries, page faults)
        warm = warm_ids()
        runs = sorted(set(cgroups.leftover_names(cgroup_parent)) - before - warm)
        if len(runs) != n:
            raise BenchError(f"{engine.name}: {len(runs)} run cgroups under {cgroup_parent}, expected {n}")
        pids: set[int] = set()
        container_ids: set[str] = set()
        usage = 0
        for run in runs:
            pids |= cgroup_procs(f"{cgroup_parent}/{run}")
            mem_dir = (
                cgroups.CGROUP_ROOT / cgroup_parent / run
                if cgroups.layout() == "v2"
                else cgroups.CGROUP_ROOT / "memory" / cgroup_parent / run
            )
            usage_file = "memory.current" if cgroups.layout() == "v2" else "memory.usage_in_bytes"
            with contextlib.suppress(OSError, ValueError):
                usage += int((mem_dir / usage_file).read_text())
            container_ids |= {d.name for d in mem_dir.iterdir() if d.is_dir()} if mem_dir.is_dir() else set()
        shims = docker_shims(container_ids) - pids if container_ids else set()
        by_kind: dict[str, dict[str, float]] = {}
        total = {"pss": 0, "rss": 0}
        for pid in sorted(pids | shims):
            mem = memory_of(pid)
            if mem is None:
                continue
            kind = "containerd-shim (not in the cgroup)" if pid in shims else process_kind(pid)
            k = by_kind.setdefault(kind, {"processes": 0, "pss": 0, "rss": 0})
            k["processes"] += 1
            for key in ("pss", "rss"):
                k[key] += mem[key]
                total[key] += mem[key]
        # What the engine keeps between runs: a `sh` per warm launcher (sandbox/launcher.py).
        warm_pss = sum((memory_of(p) or {"pss": 0})["pss"] for w in warm for p in cgroup_procs(f"{cgroup_parent}/{w}"))
        return {
            "n": n,
            "warm_launchers": len(warm),
            "warm_launchers_pss_mib": round(warm_pss / MiB, 2),
            "processes": len(pids | shims),
            "pss_per_sandbox_mib": round(total["pss"] / n / MiB, 1),
            "rss_per_sandbox_mib": round(total["rss"] / n / MiB, 1),
            "cgroup_memory_usage_per_sandbox_mib": round(usage / n / MiB, 1),
            "by_process_kind_per_sandbox_mib": {
                kind: {
                    "processes": v["processes"] / n,
                    "pss": round(v["pss"] / n / MiB, 1),
                    "rss": round(v["rss"] / n / MiB, 1),
                }
                for kind, v in sorted(by_kind.items())
            },
        }
    finally:
        for ev in cancels:
            ev.set()
        for t in threads:
            t.join(timeout=30)
        for r in results:
            if isinstance(r, ExecResult) and r.status is not Status.CANCELLED:
                print(f"  note: an idle {engine.name} sandbox ended {r.status}/{r.reason}: {r.detail}", file=sys.stderr)


def pooled_memory(config: EngineConfig, n: int, timeout: float = 60.0, *, preload: bool = False) -> dict[str, Any]:
    """Boot n pooled sandboxes (an engine with pool_size=n, no run) and measure each one's processes."""
    roomy = dataclasses.replace(config, pool_size=n, warm_launchers=False, pool_memory_bytes=64 * n * MiB)
    engine = get_engine("runsc", roomy)
    assert isinstance(engine, RunscEngine)
    try:
        engine.prepare(ExecRequest(files={"main.py": CODE.encode()}, preload=preload))
        for pool in engine._pools.values():
            pool.prefill(n)
        deadline = time.monotonic() + timeout
        while len(engine.warm_run_ids()) < n:
            if time.monotonic() > deadline:
                raise BenchError(f"{len(engine.warm_run_ids())} of {n} pooled sandboxes booted in {timeout:g}s")
            time.sleep(0.05)
        time.sleep(2.0)
        per: list[dict[str, int]] = []
        usage = 0
        by_kind: dict[str, dict[str, float]] = {}
        for run_id in engine.warm_run_ids():
            total = {"pss": 0, "rss": 0}
            for pid in cgroup_procs(f"{config.cgroup_parent}/{run_id}"):
                mem = memory_of(pid)
                if mem is None:
                    continue
                k = by_kind.setdefault(process_kind(pid), {"processes": 0, "pss": 0, "rss": 0})
                k["processes"] += 1 / n
                for key in ("pss", "rss"):
                    total[key] += mem[key]
                    k[key] += mem[key] / n / MiB
            usage += cgroups.RunCgroup(config.cgroup_parent, run_id).stats().memory_bytes or 0
            per.append(total)
        return {
            "n": n,
            "pss_per_sandbox_mib": round(sum(t["pss"] for t in per) / n / MiB, 1),
            "pss_max_mib": round(max(t["pss"] for t in per) / MiB, 1),
            "rss_per_sandbox_mib": round(sum(t["rss"] for t in per) / n / MiB, 1),
            "cgroup_memory_usage_per_sandbox_mib": round(usage / n / MiB, 1),
            "by_process_kind_per_sandbox_mib": {
                k: {kk: round(vv, 2) for kk, vv in v.items()} for k, v in sorted(by_kind.items())
            },
        }
    finally:
        engine.close()


# -- 4. import-heavy script ---------------------------------------------------------------------------


def native_output(code: str, argv0: list[str] | None) -> bytes:
    return host_python(code, argv0)[1]


def engine_output(engine: ExecutionEngine, code: str, *, preload: bool = True) -> bytes:
    return engine_sample(engine, code, None, preload=preload).stdout.data


def import_sample(run: Callable[[], bytes]) -> tuple[float, float]:
    """(wall seconds start → exit, import seconds as the script measured them inside)."""
    start = time.perf_counter()
    out = run()
    took = time.perf_counter() - start
    try:
        return took, float(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"import script printed {out[-500:]!r}") from None


# -- profile of the runsc engine ----------------------------------------------------------------------


class _Probe:
    """Wraps the runsc engine's steps (no engine code changes) and records a timeline per execute().

    Only for the serial profile phase: it patches subprocess.Popen/run and shutil.rmtree globally.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []
        self.spans: list[tuple[str, float, float]] = []
        self.poll_calls = 0
        self.events_queries = 0
        self.throttle: tuple[int, int, float] | None = None  # cpu.stat: periods, throttled, ms
        self.eofs: list[float] = []
        self.watchers: list[threading.Thread] = []
        self._undo: list[Callable[[], None]] = []

    def mark(self, label: str) -> None:
        self.events.append((label, time.monotonic()))

    def span(self, label: str, start: float) -> None:
        self.spans.append((label, start, time.monotonic()))

    def watch_exit(self, label: str, pid: int) -> None:
        """Record the exact exit time of `pid` (a pidfd turns readable; nothing is reaped)."""
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return

        def wait() -> None:
            try:
                select.select([fd], [], [])
                self.mark(label)
            finally:
                os.close(fd)

        t = threading.Thread(target=wait, daemon=True)
        t.start()
        self.watchers.append(t)

    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        setattr(owner, name, make(original))
        self._undo.append(lambda: setattr(owner, name, original))

    def _timed(self, owner: Any, name: str, label: str) -> None:
        def make(original: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                t = time.monotonic()
                try:
                    return original(*args, **kwargs)
                finally:
                    self.span(label, t)

            return wrapper

        self._patch(owner, name, make)

    def install(self) -> None:
        probe = self
        self._timed(RunscEngine, "execute", "execute")
        self._timed(runsc_module, "image_named", "image lookup")
        self._timed(RunscEngine, "_prepare_bundle", "bundle write")
        self._timed(cgroups.RunCgroup, "set_limits", "cgroup limits")
        self._timed(launcher_module.LauncherPool, "take", "launcher take")

        def make_go(original: Any) -> Any:
            def go(launcher: launcher_module.Launcher) -> Any:
                t = time.monotonic()
                try:
                    return original(launcher)
                finally:
                    probe.span("launcher go", t)
                    probe.mark("runsc run started")
                    probe.watch_exit("runsc run exited", launcher.proc.pid)
                    proc_poll = launcher.proc.poll

                    def poll() -> int | None:  # the pump's exit check, counted
                        rc = proc_poll()
                        probe.poll_calls += 1
                        if rc is not None:
                            probe.events.append(("runsc run exit detected", time.monotonic()))
                        return rc

                    launcher.proc.poll = poll  # type: ignore[method-assign]

            return go

        self._patch(launcher_module.Launcher, "go", make_go)
        self._timed(cgroups.RunCgroup, "stats", "cgroup stats read")
        self._timed(cgroups.RunCgroup, "kill_all", "cgroup kill_all")
        self._timed(cgroups.RunCgroup, "remove", "cgroup remove")

        def make_remove(original: Any) -> Any:
            def remove(cg: cgroups.RunCgroup, *a: Any, **kw: Any) -> Any:
                d = cg.dirs.get("cpu") or cg.dirs.get("unified")
                stat = cgroups._read_keyed(d / "cpu.stat") if d is not None else {}
                if stat and probe.throttle is None:
                    ns = stat.get("throttled_time", stat.get("throttled_usec", 0) * 1000)
                    probe.throttle = (stat.get("nr_periods", 0), stat.get("nr_throttled", 0), ns / 1e6)
                return original(cg, *a, **kw)

            return remove

        self._patch(cgroups.RunCgroup, "remove", make_remove)
        self._timed(runsc_module._Run, "wait", "_Run.wait")
        self._timed(process_count.GuestProcesses, "finish", "events query: collect at the end")
        self._timed(runsc_module.RunscEngine, "runtime_version", "runtime_version")
        self._timed(shutil, "rmtree", "rmtree work dir")

        base_popen = subprocess.Popen

        class TimedPopen(base_popen):  # type: ignore[misc, valid-type]
            def __init__(self, args: Any, *a: Any, **kw: Any) -> None:
                words = [str(x) for x in args] if isinstance(args, (list, tuple)) else [str(args)]
                self._kind = (
                    "runsc events"
                    if "events" in words
                    else "runsc delete"
                    if "delete" in words
                    else "runsc kill"
                    if "kill" in words
                    else "other"
                )
                t = time.monotonic()
                super().__init__(args, *a, **kw)
                probe.span(f"Popen ({self._kind})", t)
                if self._kind == "runsc events":
                    probe.events_queries += 1
                    probe.mark("events query started")
                    probe.watch_exit("events query exited", self.pid)

        def make_read(original: Any) -> Any:
            def read(fd: int, n: int) -> bytes:
                data: bytes = original(fd, n)
                if not data:
                    probe.eofs.append(time.monotonic())
                return data

            return read

        self._patch(os, "read", make_read)  # the output pump's reads: when do the pipes reach EOF?

        subprocess.Popen = TimedPopen  # type: ignore[misc]
        self._undo.append(lambda: setattr(subprocess, "Popen", base_popen))

        def make_run(original: Any) -> Any:
            def run(args: Any, *a: Any, **kw: Any) -> Any:
                t = time.monotonic()
                try:
                    return original(args, *a, **kw)
                finally:
                    words = [str(x) for x in args] if isinstance(args, (list, tuple)) else [str(args)]
                    verb = next((v for v in ("delete", "kill", "--version", "flags") if v in words), "other")
                    probe.span(f"subprocess.run ({verb})", t)

            return run

        self._patch(subprocess, "run", make_run)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def reset(self) -> None:
        for t in self.watchers:
            t.join(timeout=5)
        self.events, self.spans, self.watchers = [], [], []
        self.poll_calls = self.events_queries = 0
        self.throttle = None
        self.eofs = []

    def breakdown(self) -> dict[str, float]:
        """One execute()'s phases in ms, from the recorded timeline."""
        for t in self.watchers:
            t.join(timeout=5)
        ev: dict[str, float] = {}
        for label, when in self.events:
            ev.setdefault(label, when)
        sp: dict[str, list[tuple[float, float]]] = {}
        for label, a, b in self.spans:
            sp.setdefault(label, []).append((a, b))

        def dur(label: str) -> float:
            return sum(b - a for a, b in sp.get(label, []))

        (ex_start, ex_end) = sp["execute"][0]
        wait_end = sp["_Run.wait"][0][1]
        (popen_start, popen_end) = sp["launcher go"][0]
        detected = ev.get("runsc run exit detected", wait_end)
        # The pidfd thread needs the GIL to note the time: never later than the pump noticed it.
        exited = min(ev["runsc run exited"], detected)
        before_popen = popen_start - ex_start
        pre_named = dur("image lookup") + dur("launcher take") + dur("bundle write") + dur("cgroup limits")
        # kill_all also runs inside remove(); count only the calls made outside it.
        kill_outer = sum(
            b - a
            for a, b in sp.get("cgroup kill_all", [])
            if not any(ra <= a and b <= rb for ra, rb in sp.get("cgroup remove", []))
        )
        delete, remove, rmtree = dur("subprocess.run (delete)"), dur("cgroup remove"), dur("rmtree work dir")
        collect = dur("events query: collect at the end")
        q_start, q_end = ev.get("events query started"), ev.get("events query exited")
        eofs = [t for t in self.eofs if popen_end <= t <= wait_end]
        nan = float("nan")
        out = {
            "total": ex_end - ex_start,
            "before go: image lookup": dur("image lookup"),
            "before go: take a launcher (warm, or made now)": dur("launcher take"),
            "before go: bundle write": dur("bundle write"),
            "before go: cgroup limits": dur("cgroup limits"),
            "before go: other": before_popen - pre_named,
            "go: the line that makes the launcher exec runsc run": popen_end - popen_start,
            "runsc run: go → process exited": exited - popen_end,
            "exit detection: exited → poll() saw it": detected - exited,
            "(pipes at EOF → runsc run exited: the pump spins)": (exited - max(eofs)) if eofs else nan,
            "after exit: wait for the events query": collect,
            "after exit: drain, cgroup stats, result": (wait_end - detected) - collect,
            "teardown: runsc delete --force": delete,
            "teardown: cgroup kill_all + remove": kill_outer + remove,
            "teardown: rmtree": rmtree,
            "teardown: other": (ex_end - wait_end) - delete - kill_outer - remove - rmtree,
            "(events query: started, after go)": (q_start - popen_end) if q_start else nan,
            "(events query: its wall time)": (q_end - q_start) if q_start and q_end else nan,
            "(events query: exited, after runsc run exited)": (q_end - exited) if q_end else nan,
        }
        return {k: v * 1000 for k, v in out.items()}


@contextlib.contextmanager
def no_events_query() -> Iterator[None]:
    """What-if: the engine's first `runsc events` query comes too late for a short run (module constant)."""
    saved = process_count.FIRST_PROCESS_SAMPLE
    process_count.FIRST_PROCESS_SAMPLE = 3600.0
    try:
        yield
    finally:
        process_count.FIRST_PROCESS_SAMPLE = saved


def profile_engine(
    engine: RunscEngine, raws: list[RawRunsc], rounds: int, tput_seconds: float, failures: list[dict[str, str]]
) -> dict[str, Any]:
    """Per-phase times of the engine booting each run (pool off: the phases are a boot's), plus
    what-ifs measured round-robin with raw runsc."""
    two_cores = Limits(cpu_cores=2.0)
    engine = RunscEngine(dataclasses.replace(engine.config, pool_size=0))
    cold = RunscEngine(dataclasses.replace(engine.config, warm_launchers=False))
    parent = engine.config.cgroup_parent
    # name → (worker for thread i, context it runs in)
    variants: dict[
        str, tuple[Callable[[int], Callable[[], Any]], Callable[[], contextlib.AbstractContextManager[None]]]
    ]
    variants = {
        "raw runsc run + delete": (lambda i: raws[i].sample, contextlib.nullcontext),
        "raw runsc via a sh -c that execs it": (
            lambda i: functools.partial(raws[i].sample, via_sh=True),
            contextlib.nullcontext,
        ),
        "raw runsc, sh joins engine-style cgroup": (
            lambda i: functools.partial(raws[i].sample, parent),
            contextlib.nullcontext,
        ),
        "engine": (lambda i: functools.partial(engine_sample, engine), contextlib.nullcontext),
        "engine, launchers not warm (cold start)": (
            lambda i: functools.partial(engine_sample, cold),
            contextlib.nullcontext,
        ),
        "engine, no events query": (lambda i: functools.partial(engine_sample, engine), no_events_query),
        "engine, cpu_cores=2 (quota never binds)": (
            lambda i: functools.partial(engine_sample, engine, limits=two_cores),
            contextlib.nullcontext,
        ),
    }
    print(f"profile: {rounds} rounds of {', '.join(variants)}", flush=True)
    probe = _Probe()
    phases: list[dict[str, float]] = []
    polls: list[int] = []
    queries: list[int] = []
    throttles: list[tuple[int, int, float]] = []
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    cpu_own: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(rounds + 2):
        keep = i >= 2  # two warm-up rounds
        for name, (make, ctx) in variants.items():
            fn = make(0)
            probed = name == "engine"
            if probed:
                probe.install()
            try:
                with ctx():
                    own0, kids0 = cpu_split()
                    t = timed(functools.partial(attempt, name, fn, failures))
                    own1, kids1 = cpu_split()
                if keep:
                    wall[name].append(t)
                    cpu[name].append(own1 - own0 + kids1 - kids0)
                    cpu_own[name].append(own1 - own0)
                    if probed:
                        phases.append(probe.breakdown())
                        polls.append(probe.poll_calls)
                        queries.append(probe.events_queries)
                        if probe.throttle is not None:
                            throttles.append(probe.throttle)
            finally:
                if probed:
                    probe.reset()
                    probe.uninstall()
    med = {k: round(statistics.median(p[k] for p in phases), 2) for k in phases[0]}
    print(f"profile: throughput at concurrency 2, {tput_seconds:g}s each", flush=True)
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _ in range(SLICES):
        for name, (make, ctx) in variants.items():
            with ctx():
                parts[name].append(throughput(make, 2, tput_seconds / SLICES))
    tput = {name: merge_throughput(p) for name, p in parts.items()}
    engine.close()
    cold.close()
    return {
        "rounds": rounds,
        "phases_median_ms": med,
        "poll_calls_median": statistics.median(polls),
        "events_queries_median": statistics.median(queries),
        "cpu_throttling_median": {
            "cfs_periods": statistics.median(t[0] for t in throttles) if throttles else None,
            "periods_throttled": statistics.median(t[1] for t in throttles) if throttles else None,
            "throttled_ms": round(statistics.median(t[2] for t in throttles), 1) if throttles else None,
        },
        "wall_ms": {k: summary(v) for k, v in wall.items()},
        "cpu_ms_median": {k: round(statistics.median(v) * 1000, 1) for k, v in cpu.items()},
        "cpu_ms_median_this_process": {k: round(statistics.median(v) * 1000, 1) for k, v in cpu_own.items()},
        "throughput_c2": tput,
        "note": "wall/cpu of 'engine' include the probe's own small overhead (wrappers, pidfd threads); "
        "CPU is this process (user+sys) plus its reaped children, so it includes the sandbox",
    }


# -- plumbing -----------------------------------------------------------------------------------------


def remove_cgroup_parent(parent: str) -> None:
    """rmdir the (empty) parent cgroups this run used, in every hierarchy, deepest first."""
    root = cgroups.CGROUP_ROOT
    bases = [root] if cgroups.layout() == "v2" else [d for d in root.iterdir() if d.is_dir() and not d.is_symlink()]
    for base in bases:
        top = base / parent
        if not top.is_dir():
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(Path(w[0]).parts)):
            with contextlib.suppress(OSError):
                Path(dirpath).rmdir()


@contextlib.contextmanager
def phase(title: str) -> Iterator[None]:
    t = time.perf_counter()
    print(f"{title} (load {loadavg()})", flush=True)
    yield
    print(f"  done in {time.perf_counter() - t:.0f}s", flush=True)


# -- main ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--samples", type=int, default=30, help="latency samples of each (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured latency rounds first (default 3)")
    parser.add_argument("--throughput-seconds", type=float, default=20.0, help="per engine and concurrency (20)")
    parser.add_argument("--idle", type=int, default=4, help="idle sandboxes for the memory measurement (4)")
    parser.add_argument("--import-samples", type=int, default=10, help="samples of the import script (10)")
    parser.add_argument("--profile", action="store_true", help="profile the engine even if the targets pass")
    parser.add_argument("--profile-rounds", type=int, default=20, help="rounds of the profile (20)")
    parser.add_argument("--profile-throughput-seconds", type=float, default=10.0, help="per what-if (10)")
    parser.add_argument("--no-docker", action="store_true", help="leave the docker engine out")
    parser.add_argument(
        "--images-dir", type=Path, default=Path(os.environ.get("CRUCIBLE_IMAGES_DIR", REPO_ROOT / "var" / "images"))
    )
    parser.add_argument(
        "--docker-dir",
        type=Path,
        default=Path(os.environ.get("CRUCIBLE_DOCKER_DIR", REPO_ROOT / "var" / "docker")),
        help="the private dockerd's directory (shared with the tests; started if it does not answer)",
    )
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / "sandbox.json")
    args = parser.parse_args()

    if os.geteuid() != 0:
        print("bench: runsc and the engines' cgroups need root", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="cbs-"))  # short: runsc's socket paths must stay < 108 bytes
    cgroup_parent = f"crucible-bench-{os.getpid()}"
    config = EngineConfig(images_dir=args.images_dir, state_dir=work / "state", cgroup_parent=cgroup_parent)
    started = dt.datetime.now(dt.UTC)
    failures: list[dict[str, str]] = []
    stack = contextlib.ExitStack()
    docker: ExecutionEngine | None = None
    try:
        engine = get_engine("runsc", config)
        assert isinstance(engine, RunscEngine)
        engine.check()
        info = machine_info(engine.runtime_version(), engine.platform(), cgroups=cgroups.layout())
        print(
            f"machine: {info['cpus']} CPUs, {info['os']}, kernel {info['kernel']}, cgroups {info['cgroups']}, "
            f"{info['runsc']} ({info['runsc_platform']}), load {info['loadavg_at_start']}",
            flush=True,
        )
        raws = [RawRunsc(engine, work / f"raw{i}", CODE, EXPECTED) for i in range(2)]
        if args.no_docker:
            docker_why = "left out (--no-docker)"
        else:
            docker, docker_why = open_docker(config, args.docker_dir, stack)
        print(f"docker: {'available' if docker else 'unavailable: ' + docker_why}", flush=True)

        # 1. latency: every round measures each system once, in a shuffled order, so whatever the
        # order would favour (one run's teardown overlapping the next one's start, an idle spell
        # before the first) falls on all alike.
        # `engine` keeps pooled sandboxes (its default); `unpooled` boots each run from a warm
        # launcher; `cold` boots each run from nothing.
        unpooled = get_engine("runsc", dataclasses.replace(config, pool_size=0))
        cold = get_engine("runsc", dataclasses.replace(config, pool_size=0, warm_launchers=False))
        stack.callback(cold.sweep)
        stack.callback(unpooled.close)
        for preload in (False, True):
            engine.prepare(ExecRequest(files={"main.py": CODE.encode()}, preload=preload))
        names = ["python3", "runsc", "runsc_run_only", "engine", "engine_boot", "engine_teardown", "engine_fresh"]
        names.append("engine_unpooled")
        names.append("engine_cold")
        if docker:
            names.append("docker")
        lat: dict[str, list[float]] = {k: [] for k in names}
        cpu: dict[str, list[float]] = {
            k: [] for k in ("runsc", "engine", "runsc, this process", "engine, this process", "engine, not preloaded")
        }
        order_rng = random.Random(1)

        def measure_python3() -> None:
            lat["python3"].append(attempt("python3", sample_python, failures, retry_on=RETRY_ON))

        def measure_raw() -> None:
            own0, kids0 = cpu_split()
            b, b_run = attempt("raw runsc", raws[0].sample, failures, retry_on=RETRY_ON)
            own1, kids1 = cpu_split()
            lat["runsc"].append(b)
            lat["runsc_run_only"].append(b_run)
            cpu["runsc"].append(own1 - own0 + kids1 - kids0)
            cpu["runsc, this process"].append(own1 - own0)

        def measure_engine() -> None:
            own0, kids0 = cpu_split()
            t = time.perf_counter()
            res = attempt("runsc engine", lambda: engine_sample(engine), failures, retry_on=RETRY_ON)
            lat["engine"].append(time.perf_counter() - t)
            own1, kids1 = cpu_split()
            lat["engine_boot"].append(res.timings.boot_seconds or float("nan"))
            lat["engine_teardown"].append(res.timings.teardown_seconds)
            cpu["engine"].append(own1 - own0 + kids1 - kids0)
            cpu["engine, this process"].append(own1 - own0)

        def measure_fresh() -> None:
            own0, kids0 = cpu_split()
            t = time.perf_counter()
            attempt("runsc engine, fresh", lambda: engine_sample(engine, preload=False), failures, retry_on=RETRY_ON)
            lat["engine_fresh"].append(time.perf_counter() - t)
            own1, kids1 = cpu_split()
            cpu["engine, not preloaded"].append(own1 - own0 + kids1 - kids0)

        def measure_unpooled() -> None:
            t = time.perf_counter()
            attempt("runsc engine, pool off", lambda: engine_sample(unpooled), failures, retry_on=RETRY_ON)
            lat["engine_unpooled"].append(time.perf_counter() - t)

        def measure_cold() -> None:
            t = time.perf_counter()
            attempt("runsc engine, cold", lambda: engine_sample(cold), failures, retry_on=RETRY_ON)
            lat["engine_cold"].append(time.perf_counter() - t)

        def measure_docker() -> None:
            assert docker is not None
            t = time.perf_counter()
            attempt("docker engine", lambda: engine_sample(docker), failures, retry_on=RETRY_ON)
            lat["docker"].append(time.perf_counter() - t)

        measures = [measure_python3, measure_raw, measure_engine, measure_fresh, measure_unpooled, measure_cold]
        measures += [measure_docker] if docker else []
        with phase(f"1. latency: {args.warmup} warm-up + {args.samples} rounds, each in a shuffled order"):
            for i in range(args.warmup + args.samples):
                if i == args.warmup:
                    for v in (*lat.values(), *cpu.values()):
                        v.clear()
                for measure in order_rng.sample(measures, len(measures)):
                    measure()
        latency = {k: summary(v) for k, v in lat.items()}
        # Paired: the engine's and raw runsc's samples of one round ran next to each other.
        paired = paired_difference(lat["engine"], lat["runsc_run_only"])
        cpu_ms = {k: round(statistics.median(v) * 1000, 1) for k, v in cpu.items()}

        # 2. throughput
        systems: dict[str, Callable[[int], Callable[[], object]]] = {
            "raw runsc": lambda i: raws[i].sample,
            "runsc engine": lambda i: lambda: engine_sample(engine),
            "runsc engine, pool off": lambda i: lambda: engine_sample(unpooled),
        }
        if docker:
            systems["docker engine"] = lambda i: lambda: engine_sample(docker)
        tput: dict[str, dict[str, Any]] = {}
        with phase(f"2. throughput: {len(systems)} systems x concurrency 1, 2 x {args.throughput_seconds:g}s"):
            for conc in (1, 2):
                parts: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
                for _ in range(SLICES):  # interleaved slices, so load drift hits all alike
                    for name, make in systems.items():
                        parts[name].append(throughput(make, conc, args.throughput_seconds / SLICES))
                for name in systems:
                    tput.setdefault(name, {})[f"c{conc}"] = merge_throughput(parts[name])
                    print(f"  {name}, concurrency {conc}: {tput[name][f'c{conc}']['runs_per_min']} runs/min")

        # 3. idle memory
        memory: dict[str, Any] = {}
        with phase(f"3. memory: {args.idle} idle sandboxes per engine"):
            memory["runsc engine"] = idle_memory(engine, cgroup_parent, args.idle)
            memory["pooled sandbox, waiting for a run"] = pooled_memory(config, args.idle)
            memory["preloaded pooled sandbox, waiting"] = pooled_memory(config, args.idle, preload=True)
            if docker:
                memory["docker engine"] = idle_memory(docker, f"{cgroup_parent}-docker", args.idle)

        # 4. import-heavy script
        rootfs = load_image(args.images_dir, default_recipes(host_suite())[DEFAULT_IMAGE]).rootfs
        chroot = [shutil.which("chroot") or "/usr/sbin/chroot", str(rootfs), "/usr/bin/python3"]
        imp: dict[str, dict[str, list[tuple[float, float]]]] = {
            "stdlib": {"host python3": [], "image python3 (chroot)": [], "runsc engine": [], FRESH: []},
            "stdlib + numpy": {"image python3 (chroot)": [], "runsc engine": [], FRESH: []},
        }
        with phase(f"4. import-heavy script: {args.import_samples} samples of each"):
            for i in range(args.import_samples + 1):
                for script, label in ((STDLIB_SCRIPT, "stdlib"), (NUMPY_SCRIPT, "stdlib + numpy")):
                    runs: dict[str, Callable[[], bytes]] = {
                        "image python3 (chroot)": functools.partial(native_output, script, chroot),
                        "runsc engine": functools.partial(engine_output, engine, script),
                        FRESH: functools.partial(engine_output, engine, script, preload=False),
                    }
                    if label == "stdlib":
                        runs["host python3"] = functools.partial(native_output, script, None)
                    for who, fn in runs.items():
                        sample = attempt(
                            f"import {label} {who}", functools.partial(import_sample, fn), failures, retry_on=RETRY_ON
                        )
                        if i > 0:  # the first round warms the page cache
                            imp[label][who].append(sample)
        imports: dict[str, Any] = {}
        for label, by in imp.items():
            imports[label] = {
                who: {
                    "wall": summary([s[0] for s in v]),
                    "imports_inside_ms_median": round(statistics.median(s[1] for s in v) * 1000, 1),
                }
                for who, v in by.items()
            }

        # targets
        # Against `runsc run` alone: a foreground run that ended by itself leaves nothing to delete,
        # and the engine skips the delete then (sandbox/runsc.py), so the delete is no part of the
        # work both do. The ratio to run + delete is printed too.
        lat_ratio = latency["engine"]["median_ms"] / latency["runsc_run_only"]["median_ms"]
        lat_ratio_with_delete = latency["engine"]["median_ms"] / latency["runsc"]["median_ms"]
        cold_ratio = latency["engine_cold"]["median_ms"] / latency["runsc_run_only"]["median_ms"]
        tput_ratio = tput["runsc engine"]["c2"]["runs_per_min"] / tput["raw runsc"]["c2"]["runs_per_min"]
        lat_pass = lat_ratio <= TARGET_LATENCY_RATIO
        tput_pass = tput_ratio >= TARGET_THROUGHPUT_RATIO

        profile = None
        if args.profile or not (lat_pass and tput_pass):
            profile = profile_engine(engine, raws, args.profile_rounds, args.profile_throughput_seconds, failures)
    except (BenchError, SandboxError, EngineUnavailable) as exc:
        print(f"bench: measurement failed: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.close()
        with contextlib.suppress(Exception):
            engine.close()
            engine.sweep()
        if docker is not None:
            with contextlib.suppress(Exception):
                docker.sweep()
        remove_cgroup_parent(f"{cgroup_parent}-docker")
        remove_cgroup_parent(cgroup_parent)
        shutil.rmtree(work, ignore_errors=True)

    info["loadavg_at_end"] = loadavg()

    # -- report -----------------------------------------------------------------------------------
    rows = [
        ("(a) python3 -c 'print(1)'", latency["python3"]),
        ("(b) raw runsc run + delete", latency["runsc"]),
        ("    raw runsc run only  [baseline]", latency["runsc_run_only"]),
        ("(c) runsc engine execute(), pool on, preloaded", latency["engine"]),
        ("    its timings.boot_seconds", latency["engine_boot"]),
        ("    its timings.teardown_seconds", latency["engine_teardown"]),
        ("    the same, pool on, fresh interpreter", latency["engine_fresh"]),
        ("    the same, pool off (warm launchers)", latency["engine_unpooled"]),
        ("    the same, pool off, launchers cold", latency["engine_cold"]),
    ]
    if docker:
        rows.append(("(d) docker engine execute()", latency["docker"]))
    width = 48
    print()
    print(f"1. start → exit of print(1){'':{width - 27}}  {'min':>9} {'median':>9} {'p95':>9}   (ms, n={args.samples})")
    for label, s in rows:
        print(summary_row(label, s, width))
    if not docker:
        print(f"{'(d) docker: unavailable: ' + docker_why}")
    print(f"    CPU per run (median ms; this process + its children): raw {cpu_ms['runsc']}, "
          f"engine {cpu_ms['engine']} (of which this process: {cpu_ms['runsc, this process']}, "
          f"{cpu_ms['engine, this process']}), engine not preloaded {cpu_ms['engine, not preloaded']}")  # fmt: skip
    verdict = "PASS" if lat_pass else "FAIL"
    print(f"(c)/(b run only) at the median: {lat_ratio:.2f}   target <= {TARGET_LATENCY_RATIO:g}: {verdict}")
    print(f"(c)/(b run + delete) at the median: {lat_ratio_with_delete:.2f}")
    print(f"(c) - (b run only), paired by round: median {paired['median_ms']:+.1f} ms, "
          f"95% interval [{paired['ci95_low_ms']:+.1f}, {paired['ci95_high_ms']:+.1f}]; "
          f"cold start/(b run only): {cold_ratio:.2f}")  # fmt: skip

    print()
    print(f"2. trivial runs per minute{'':{width - 25}}  {'c=1':>9} {'c=2':>9}   (median latency at c=2)")
    for name, tp in tput.items():
        print(f"{name:{width}}  {tp['c1']['runs_per_min']:9.0f} {tp['c2']['runs_per_min']:9.0f}   "
              f"({tp['c2']['median_latency_ms']:.0f} ms)")  # fmt: skip
    if not docker:
        print(f"{'docker engine':{width}}  unavailable: {docker_why}")
    verdict = "PASS" if tput_pass else "FAIL"
    print(f"engine/raw at c=2: {tput_ratio:.2f}   target >= {TARGET_THROUGHPUT_RATIO:g}: {verdict}")

    print()
    title = f"3. memory per idle sandbox (N={args.idle}, MiB)"
    print(f"{title:{width}}  {'PSS':>8}  {'RSS':>8}  {'cgroup usage':>12}")
    for name, m in memory.items():
        print(f"{name:{width}}  {m['pss_per_sandbox_mib']:8.1f}  {m['rss_per_sandbox_mib']:8.1f}  "
              f"{m['cgroup_memory_usage_per_sandbox_mib']:12.1f}")  # fmt: skip
        for kind, v in m["by_process_kind_per_sandbox_mib"].items():
            print(f"    {kind[:36]:36} x{v['processes']:<3g}  {v['pss']:8.1f}  {v['rss']:8.1f}")
        if m.get("warm_launchers"):
            kept = m["warm_launchers"]
            print(f"    + {kept} warm launchers kept between runs, in all: PSS {m['warm_launchers_pss_mib']} MiB")
    if not docker:
        print(f"{'docker engine':{width}}  unavailable: {docker_why}")

    print()
    title = f"4. import-heavy script (ms, n={args.import_samples})"
    print(f"{title:{width}}  {'wall':>9}  {'imports':>9}     vs host python3 (median of wall; of imports)")
    host_wall = imports["stdlib"]["host python3"]["wall"]["median_ms"]
    host_inside = imports["stdlib"]["host python3"]["imports_inside_ms_median"]
    chroot_np = imports["stdlib + numpy"]["image python3 (chroot)"]
    for label, by in imports.items():
        for who, v in by.items():
            ref_wall, ref_inside = (
                (host_wall, host_inside)
                if label == "stdlib"
                else (chroot_np["wall"]["median_ms"], chroot_np["imports_inside_ms_median"])
            )
            wall_x = v["wall"]["median_ms"] / ref_wall
            inside_x = v["imports_inside_ms_median"] / ref_inside
            ratio = f"{wall_x:5.2f}x  {inside_x:5.2f}x"
            name = f"{label}: {who}"
            print(f"{name:{width}}  {v['wall']['median_ms']:9.1f}  {v['imports_inside_ms_median']:9.1f}     {ratio}")
    print("    (stdlib + numpy rows are relative to the image's python3 in a chroot: the host's has no numpy)")
    import_ratio = imports["stdlib"]["runsc engine"]["wall"]["median_ms"] / host_wall
    vs_chroot = {
        label: round(by["runsc engine"]["wall"]["median_ms"] / by["image python3 (chroot)"]["wall"]["median_ms"], 2)
        for label, by in imports.items()
    }
    verdict = "PASS" if max(vs_chroot.values()) <= TARGET_IMPORT_RATIO else "FAIL"
    print(f"engine/image python3 in a chroot (wall): stdlib {vs_chroot['stdlib']:.2f}, stdlib + numpy "
          f"{vs_chroot['stdlib + numpy']:.2f}   target <= {TARGET_IMPORT_RATIO:g}: {verdict}")  # fmt: skip

    if profile:
        print()
        print(f"profile of the runsc engine, pool off (median of {profile['rounds']} execute() calls, ms):")
        for k, v in profile["phases_median_ms"].items():
            print(f"    {k:52} {v:8.1f}")
        print(f"    pump's proc.poll() calls per run: {profile['poll_calls_median']:g}; "
              f"`runsc events` queries per run: {profile['events_queries_median']:g}")  # fmt: skip
        th = profile["cpu_throttling_median"]
        print(f"    run cgroup cpu.stat (1-core quota): {th['cfs_periods']} periods, {th['periods_throttled']} "
              f"throttled, {th['throttled_ms']} ms throttled")  # fmt: skip
        print("  what-ifs, round-robin (medians): wall ms / CPU ms per run (of it in this process) / runs/min at c=2")
        for k, w in profile["wall_ms"].items():
            print(f"    {k:40} {w['median_ms']:8.1f}   CPU {profile['cpu_ms_median'][k]:6.1f} "
                  f"({profile['cpu_ms_median_this_process'][k]:4.1f})   "
                  f"{profile['throughput_c2'][k]['runs_per_min']:6.0f}/min")  # fmt: skip

    print()
    print(f"load average: {info['loadavg_at_start']} at the start, {info['loadavg_at_end']} at the end")
    if failures:
        print(f"note: {len(failures)} sample(s) failed and were retried; see failed_samples_retried in the JSON")

    result = {
        "date": started.isoformat(timespec="seconds"),
        "machine": info,
        "code": CODE,
        "latency": {
            "samples": args.samples,
            "warmup_rounds": args.warmup,
            "order": "shuffled in each round (seeded)",
            "stats_ms": latency,
            "engine_minus_raw_run_only_paired_ms": paired,
            "cpu_ms_median": cpu_ms,
        },
        "docker": "available" if docker else f"unavailable: {docker_why}",
        "throughput": {"seconds_each": args.throughput_seconds, "results": tput},
        "idle_memory": memory,
        "imports": {
            "stdlib_script": STDLIB_SCRIPT,
            "numpy_script": NUMPY_SCRIPT,
            "results": imports,
            "engine_over_host_wall_median": round(import_ratio, 2),
            "engine_over_image_python3_chroot_wall_median": vs_chroot,
        },  # fmt: skip
        "targets": {
            "latency": {
                "ratio": round(lat_ratio, 3),
                "baseline": "raw runsc run only",
                "ratio_to_run_and_delete": round(lat_ratio_with_delete, 3),
                "ratio_cold_launchers": round(cold_ratio, 3),
                "max": TARGET_LATENCY_RATIO,
                "passed": lat_pass,
            },
            "throughput_c2": {"ratio": round(tput_ratio, 3), "min": TARGET_THROUGHPUT_RATIO, "passed": tput_pass},
        },
        "profile": profile,
        "failed_samples_retried": failures,
        "raw_seconds": {k: [round(v, 6) for v in vals] for k, vals in lat.items()},
    }
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
