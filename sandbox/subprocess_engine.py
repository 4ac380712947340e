"""DEVELOPMENT ONLY, NOT A SANDBOX: runs the request with the host's python3 under rlimits.

For machines without gVisor. It refuses to run unless EngineConfig.allow_subprocess is set, and is
never chosen automatically. What it enforces and what it cannot contain: docs/sandbox.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import resource
import secrets
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox import workdirs
from sandbox.contract import (
    ExecRequest,
    ExecResult,
    Limits,
    OutputCallback,
    Timings,
    Usage,
)
from sandbox.engine import EngineConfig, ExecutionEngine, MetricSample, MetricsCallback
from sandbox.errors import EngineUnavailable, SandboxError
from sandbox.guest_env import GUEST_DIR, guest_environment
from sandbox.janitor import Janitor, Spec
from sandbox.process_count import ProcessSamples
from sandbox.pump import METRICS_EVERY, OutputPump
from sandbox.verdict import decide, exec_result, last_stderr_line, with_teardown

logger = logging.getLogger(__name__)

NOT_A_SANDBOX = (
    "the subprocess engine is not a sandbox: it runs submitted code directly on this host with only "
    "rlimits (no network or filesystem isolation). It is for development only and refuses to run "
    "unless enabled explicitly (EngineConfig(allow_subprocess=True)); use the runsc engine otherwise"
)
HOST_PATH = "/usr/local/bin:/usr/bin:/bin"
# Names this engine's work dirs; no engine's prefix starts another's, so no sweep takes another's.
RUN_PREFIX = "crucible-subprocess-"
# Per-run uids when the worker is root: far above any real account, one per run.
UID_BASE = 2_100_000_000
UID_SPAN = 10_000_000
PROCESS_SAMPLE_FAST = 0.1
FIRST_SCAN_RETRY = 0.02
KILL_TIMEOUT = 2.0

# Runs first in the child (the host's python3 with -S -E: no site, no PYTHON* variables): applies the
# rlimits, drops to the run's uid if there is one, then execs the real interpreter. Doing this in a
# separate exec instead of a preexec_fn keeps spawning safe in a threaded worker.
_LAUNCHER = """
import ctypes, json, os, resource, sys
cfg = json.loads(sys.argv[1])
for name, value in cfg["rlimits"]:
    resource.setrlimit(getattr(resource, name), (value, value))
# PR_SET_NO_NEW_PRIVS: setuid programs (sudo, su) cannot raise the program's privileges.
if ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0) != 0:
    sys.exit("crucible: cannot set no_new_privs")
if cfg["uid"] is not None:
    os.setgroups([])
    os.setgid(cfg["uid"])
    os.setuid(cfg["uid"])
os.execv(sys.argv[2], sys.argv[2:])
"""


class SubprocessEngine(ExecutionEngine):
    name = "subprocess"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._python = shutil.which("python3", path=HOST_PATH)
        self._version: str | None = None
        # Kills this process's runs should it die or hang (sandbox/janitor.py).
        self._janitor = Janitor()

    def check(self) -> None:
        if not self.config.allow_subprocess:
            raise EngineUnavailable(NOT_A_SANDBOX)
        if self._python is None:
            raise EngineUnavailable(f"the subprocess engine needs python3 in {HOST_PATH}")

    def runtime_version(self) -> str:
        if self._version is None:
            self.check()
            assert self._python is not None
            out = subprocess.run([self._python, "--version"], capture_output=True, text=True, env={})
            self._version = f"{out.stdout.strip() or 'python3 unknown'} ({self._python}, not sandboxed)"
        return self._version

    def execute(
        self,
        request: ExecRequest,
        *,
        on_output: OutputCallback | None = None,
        on_metrics: MetricsCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        self.check()
        uid = UID_BASE + secrets.randbelow(UID_SPAN) if os.geteuid() == 0 else None
        state_dir = self.config.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        if uid is not None:
            _make_traversable(state_dir)
        # The sweep spares the run's processes and work dir while this lock is held.
        name = f"{RUN_PREFIX}{'user' if uid is None else uid}-{secrets.token_hex(6)}"
        self._janitor.add(name, {"kind": "subprocess", "workdir": str(state_dir / name), "uid": uid, "pgid": None})
        run: _Run | None = None
        try:
            workdir, lock = workdirs.create(state_dir, name)
            try:
                _prepare(workdir, request, uid)
                run = _Run(self, workdir, request, uid, on_output, on_metrics, cancel)
                result = run.wait()
            finally:
                teardown_start = time.monotonic()
                # Whatever the program left running (daemons, a fork bomb) dies with the run.
                (run.group if run is not None else _Group(None, uid)).kill()
                shutil.rmtree(workdir, ignore_errors=True)
                lock.close()
        finally:
            self._janitor.remove(name)
        return with_teardown(result, time.monotonic() - teardown_start)

    def sweep(self) -> None:
        """Kill the processes and remove the work dirs of runs whose worker died (lock free)."""

        def remove(workdir: Path) -> None:
            owner = workdir.name[len(RUN_PREFIX) :].split("-", 1)[0]
            if owner.isdigit() and os.geteuid() == 0:
                _Group(None, int(owner)).kill()
            shutil.rmtree(workdir, ignore_errors=True)

        workdirs.sweep(self.config.state_dir, RUN_PREFIX, remove)

    def close(self) -> None:
        self._janitor.close()


def clean_up(run_id: str, spec: Spec) -> None:
    """The janitor's teardown of a run whose owner died or overran (sandbox/janitor.py)."""
    if spec["pgid"] is not None or spec["uid"] is not None:
        _Group(spec["pgid"], spec["uid"]).kill()
    shutil.rmtree(spec["workdir"], ignore_errors=True)


def _make_traversable(path: Path) -> None:
    """The run's own uid must reach its work dir: add o+x to the state dir (not o+r: no listing)."""
    mode = path.stat().st_mode
    if not mode & 0o001:
        path.chmod((mode & 0o7777) | 0o011)
    for parent in path.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise EngineUnavailable(
                f"the subprocess engine runs code as an unprivileged uid, which cannot reach the state "
                f"dir {path}: {parent} is not searchable by others (chmod o+x, or choose another state dir)"
            )


def _prepare(workdir: Path, request: ExecRequest, uid: int | None) -> None:
    workdirs.write_code(workdir, request, reader=uid)
    home = workdir / "home"
    home.mkdir(mode=0o700)
    if uid is not None:
        os.chown(home, uid, uid)
        workdir.chmod(0o711)  # the run's uid reaches code/ (its group may read) and home/ (its own)
    workdirs.write_private(workdir / "stdin", request.stdin)


def _rlimits(limits: Limits, uid: int | None) -> list[tuple[str, int]]:
    # RLIMIT_NPROC counts every task of the real uid: a per-run uid starts at zero; the worker's own
    # user already has some, so the program gets that many more.
    nproc = limits.processes if uid is not None else _tasks_of_uid(os.getuid()) + limits.processes
    # Only a backstop should the worker die: the wall limit ends runs long before it.
    cpu = math.ceil(limits.wall_seconds * (os.cpu_count() or 1)) + 1
    return [
        ("RLIMIT_DATA", limits.memory_bytes),
        ("RLIMIT_NPROC", nproc),
        ("RLIMIT_FSIZE", limits.file_size_bytes),
        ("RLIMIT_NOFILE", limits.open_files),
        ("RLIMIT_CPU", cpu),
        ("RLIMIT_CORE", 0),
    ]


@dataclass(frozen=True)
class _GroupStats:
    tasks: int
    cpu_seconds: float
    rss_bytes: int


class _Group:
    """The run's processes: those of its own uid (root workers), else those of its process group."""

    def __init__(self, pgid: int | None, uid: int | None) -> None:
        self.pgid, self.uid = pgid, uid
        self.owner = os.getuid() if uid is None else uid

    def _members(self, *, thorough: bool = False) -> list[tuple[int, list[str]]]:
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                # Cheap filter (reading every process's stat is slow): /proc/<pid> belongs to the
                # process's euid, or to root if it made itself non-dumpable; the thorough scan that
                # kill() uses reads every real uid instead.
                if not thorough and os.stat(f"/proc/{entry}").st_uid != self.owner:
                    continue
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                if thorough and self.uid is not None:
                    with open(f"/proc/{entry}/status") as f:
                        uid_line = next(line for line in f if line.startswith("Uid:"))
                    if int(uid_line.split()[1]) != self.uid:
                        continue
            except (OSError, StopIteration, ValueError):
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
            if self.uid is None and (self.pgid is None or int(fields[2]) != self.pgid):
                continue
            found.append((int(entry), fields))
        return found

    def stats(self) -> _GroupStats:
        tick = os.sysconf("SC_CLK_TCK")
        page = os.sysconf("SC_PAGE_SIZE")
        tasks = cpu = rss = 0
        for _, f in self._members():
            if f[0] == "Z":
                continue
            # utime, stime, cutime, cstime (fields 14-17 of stat), threads (20), rss pages (24)
            cpu += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
            tasks += int(f[17])
            rss += int(f[21]) * page
        return _GroupStats(tasks=tasks, cpu_seconds=cpu / tick, rss_bytes=rss)

    def kill(self) -> None:
        """SIGKILL every member until none is left (or KILL_TIMEOUT passes)."""
        deadline = time.monotonic() + KILL_TIMEOUT
        while True:
            if self.pgid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pgid, signal.SIGKILL)
            alive = [pid for pid, f in self._members(thorough=True) if f[0] != "Z"] if self.uid is not None else []
            for pid in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if not alive or time.monotonic() >= deadline:
                return
            time.sleep(0.01)


class _Sampler(threading.Thread):
    """Scans /proc for the run's processes off the pump's thread: a scan is too slow for the pump's."""

    def __init__(self, group: _Group, counts: ProcessSamples) -> None:
        super().__init__(name="crucible-subprocess-sampler", daemon=True)
        self.group, self.counts = group, counts
        self.latest: _GroupStats | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            now = time.monotonic()
            stats = self.group.stats()
            self.latest = stats
            if stats.tasks:
                self.counts.add(now, stats.tasks)
                wait = PROCESS_SAMPLE_FAST if self.counts.near_limit else METRICS_EVERY
            else:
                wait = FIRST_SCAN_RETRY  # still the launcher (root): look again soon for short runs
            self._stop_event.wait(wait)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _tasks_of_uid(uid: int) -> int:
    return _Group(None, uid).stats().tasks


class _Run:
    def __init__(
        self,
        engine: SubprocessEngine,
        workdir: Path,
        request: ExecRequest,
        uid: int | None,
        on_output: OutputCallback | None,
        on_metrics: MetricsCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.engine, self.workdir, self.request, self.uid = engine, workdir, request, uid
        self.on_output, self.on_metrics, self.cancel = on_output, on_metrics, cancel
        self.group = _Group(None, uid)
        self.status: int | None = None
        self.rusage: resource.struct_rusage | None = None
        self.sampler: _Sampler | None = None

    def wait(self) -> ExecResult:
        python = self.engine._python
        assert python is not None
        code = self.workdir / "code"
        limits = self.request.limits
        config = json.dumps({"rlimits": _rlimits(limits, self.uid), "uid": self.uid})
        argv = [python, "-u", str(code / self.request.entrypoint), *self.request.argv]
        env = guest_environment(self.request, home=str(self.workdir / "home"), guest_dir=str(GUEST_DIR))
        started = time.monotonic()
        with open(self.workdir / "stdin", "rb") as stdin:
            try:
                proc = subprocess.Popen(
                    [python, "-S", "-E", "-c", _LAUNCHER, config, *argv],
                    stdin=stdin,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=code,
                    env=env,  # never the worker's own environment
                    start_new_session=True,  # its own process group, no controlling terminal
                    close_fds=True,
                )
            except OSError as exc:
                raise SandboxError(f"cannot start {python}: {exc}") from exc
        self.group = _Group(proc.pid, self.uid)
        janitor, name = self.engine._janitor, self.workdir.name
        spec = {"kind": "subprocess", "workdir": str(self.workdir), "uid": self.uid, "pgid": proc.pid}
        janitor.add(name, spec)
        janitor.deadline(name, limits.wall_seconds + self.engine.config.backstop_grace_seconds)
        logger.info("sandbox %s started", name)
        self.sampler = _Sampler(self.group, ProcessSamples(limits.processes))
        self.sampler.start()
        assert proc.stdout is not None and proc.stderr is not None

        def exited() -> bool:
            if self.status is None:
                pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    self.status, self.rusage = status, rusage
                    proc.returncode = os.waitstatus_to_exitcode(status)
            return self.status is not None

        pump = OutputPump(
            stdout=proc.stdout.fileno(),
            stderr=proc.stderr.fileno(),
            exited=exited,
            kill=self.group.kill,
            force_kill=self.group.kill,
            wall_seconds=limits.wall_seconds,
            stdout_cap=limits.stdout_bytes,
            stderr_cap=limits.stderr_bytes,
            on_output=self.on_output,
            on_metrics=self.on_metrics,
            sample=self._sample,
            cancel=self.cancel,
            started=started,
        )
        try:
            pump.run()
        finally:
            self.sampler.stop()
            if not exited():
                pump.kill(None)
                deadline = time.monotonic() + 5
                while not exited() and time.monotonic() < deadline:
                    time.sleep(0.01)
            for f in (proc.stdout, proc.stderr):
                f.close()
        ended = time.monotonic()
        assert proc.returncode is not None
        return self._result(pump, proc.returncode, started, ended)

    def _sample(self, elapsed: float) -> MetricSample:
        assert self.sampler is not None
        s = self.sampler.latest
        if s is None:
            return MetricSample(elapsed, None, None, None)
        return MetricSample(elapsed, s.cpu_seconds, s.rss_bytes, s.tasks or None)

    def _result(self, pump: OutputPump, returncode: int, started: float, ended: float) -> ExecResult:
        limits = self.request.limits
        assert self.sampler is not None
        counts = self.sampler.counts  # see sandbox/process_count.py for what they can tell
        verdict = decide(
            pump=pump,
            limits=limits,
            counts=counts,
            returncode=returncode,
            ended=ended,
            out_of_memory=returncode != 0 and last_stderr_line(pump).startswith("MemoryError"),
            memory_detail=f"memory limit of {limits.memory_bytes} bytes exceeded (MemoryError under RLIMIT_DATA)",
        )
        rusage = self.rusage
        return exec_result(
            self.engine,
            pump,
            verdict,
            returncode=returncode,
            usage=Usage(
                cpu_seconds=None if rusage is None else rusage.ru_utime + rusage.ru_stime,
                peak_memory_bytes=None if rusage is None else rusage.ru_maxrss * 1024,
                peak_processes=counts.peak,
            ),
            timings=Timings(boot_seconds=None, run_seconds=ended - started),
        )  # no image_digest: the host's own python3
