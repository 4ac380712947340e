"""The default engine: one foreground `runsc run` (gVisor) per request, in a cgroup of our own.

Facts this design rests on (measured, see DESIGN.md): `runsc run --detach` + delete costs seconds,
so runs are foreground; runsc deletes its own cgroup on exit, so OOM is read from ours; a small
pids cgroup limit crashes runsc, so processes are limited with RLIMIT_NPROC.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import selectors
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from sandbox import cgroups
from sandbox.contract import (
    ExecRequest,
    ExecResult,
    OutputCallback,
    Reason,
    Status,
    Stream,
    StreamResult,
    Timings,
    Usage,
)
from sandbox.engine import EngineConfig, ExecutionEngine, MetricSample, MetricsCallback
from sandbox.errors import EngineUnavailable, InvalidRequest
from sandbox.images import DEFAULT_IMAGE, Image, default_recipes, host_suite, load_image

SANDBOX_UID = 65534  # nobody
READ_CHUNK = 64 * 1024
POLL_SECONDS = 0.05
METRICS_EVERY = 0.5
# The sentry and gofer live in the run's cgroup and use memory of their own; without this headroom
# a small memory limit would kill the sandbox before user code allocates anything.
SENTRY_OVERHEAD_BYTES = 32 * 1024 * 1024
KILL_GRACE_SECONDS = 0.5
RUN_PREFIX = "crucible-"
# Files of ours that the sandboxed interpreter loads at start-up (read-only inside).
GUEST_DIR = Path(__file__).resolve().parent / "guest"
GUEST_MOUNT = "/opt/crucible"

INSTALL_HINT = (
    "runsc (gVisor) is not installed. On Debian 12: add the bookworm-backports suite and "
    "`apt-get install -t bookworm-backports runsc` (or run `make run`, which does this); "
    "on Debian 13: `apt-get install runsc`."
)

# Joins the run's cgroup(s) before exec'ing runsc, so every process runsc starts is inside them.
_JOIN_CGROUP = 'for f in $CRUCIBLE_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; exec "$@"'


class RunscEngine(ExecutionEngine):
    name = "runsc"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._runsc = shutil.which(config.runsc_path)
        self._version: str | None = None
        self._platform: str | None = None

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
        self._image(DEFAULT_IMAGE)

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

    def check_binary(self) -> None:
        if self._runsc is None:
            raise EngineUnavailable(INSTALL_HINT)

    def _image(self, name: str) -> Image:
        recipe = default_recipes(host_suite()).get(name)
        if recipe is None:
            raise InvalidRequest("image", f"unknown image {name!r}")
        return load_image(self.config.images_dir, recipe)

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
        image = self._image(request.image)
        run_id = RUN_PREFIX + secrets.token_hex(8)
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        workdir = self.config.state_dir / run_id
        workdir.mkdir(mode=0o700)
        # Held for the life of the run: the start-up sweep skips work dirs whose lock is taken.
        lock = open(workdir / "lock", "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
        cgroup = cgroups.RunCgroup(self.config.cgroup_parent, run_id)
        try:
            self._prepare_bundle(workdir, request, image)
            cgroup.create(
                memory_bytes=request.limits.memory_bytes + SENTRY_OVERHEAD_BYTES,
                cpu_cores=request.limits.cpu_cores,
            )
            run = _Run(self, run_id, workdir, request, cgroup, on_output, on_metrics, cancel)
            result = run.wait()
            teardown_start = time.monotonic()
            self._teardown(run_id, workdir, cgroup)
            return _with_teardown(result, time.monotonic() - teardown_start, image.digest)
        except BaseException:
            self._teardown(run_id, workdir, cgroup)
            raise
        finally:
            lock.close()

    def _prepare_bundle(self, workdir: Path, request: ExecRequest, image: Image) -> None:
        code = workdir / "code"
        code.mkdir(mode=0o755)
        for name, data in request.files.items():
            path = code / name
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            path.write_bytes(data)
            path.chmod(0o644)
        workdir.chmod(0o711)  # the gofer reads code/ on the sandbox's behalf
        (workdir / "stdin").write_bytes(request.stdin)
        (workdir / "state").mkdir(mode=0o700)
        (workdir / "config.json").write_text(json.dumps(oci_spec(request, image.rootfs, code)))

    def runsc_command(self, workdir: Path, run_id: str, *args: str) -> list[str]:
        assert self._runsc is not None
        return [
            self._runsc,
            "--root",
            str(workdir / "state"),
            "--network=none",
            "--ignore-cgroups",
            "--overlay2=none",
            f"--platform={self.platform()}",
            *args,
        ]

    def kill(self, workdir: Path, run_id: str) -> None:
        subprocess.run(
            self.runsc_command(workdir, run_id, "kill", "--all", run_id, "KILL"),
            capture_output=True,
            timeout=5,
        )

    def _teardown(self, run_id: str, workdir: Path, cgroup: cgroups.RunCgroup) -> None:
        if (workdir / "state").exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run(
                    self.runsc_command(workdir, run_id, "delete", "--force", run_id),
                    capture_output=True,
                    timeout=10,
                )
        cgroup.kill_all()
        cgroup.remove()
        shutil.rmtree(workdir, ignore_errors=True)

    def sweep(self) -> None:
        """Delete sandboxes, work dirs and cgroups of runs whose worker died (their lock is free)."""
        state_dir = self.config.state_dir
        live: set[str] = set()
        if state_dir.is_dir():
            for workdir in state_dir.iterdir():
                if not workdir.name.startswith(RUN_PREFIX):
                    continue
                try:
                    lock = open(workdir / "lock", "a")
                except OSError:
                    lock = None
                try:
                    if lock is not None:
                        try:
                            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        except BlockingIOError:
                            live.add(workdir.name)
                            continue
                    with contextlib.suppress(EngineUnavailable):
                        self._teardown(
                            workdir.name, workdir, cgroups.RunCgroup(self.config.cgroup_parent, workdir.name)
                        )
                finally:
                    if lock is not None:
                        lock.close()
        for name in cgroups.leftover_names(self.config.cgroup_parent):
            if name.startswith(RUN_PREFIX) and name not in live and not (state_dir / name).exists():
                # No work dir here: it may be a live run of an engine with another state dir, so
                # only an empty cgroup is removed, and nothing in it is killed.
                cg = cgroups.RunCgroup(self.config.cgroup_parent, name)
                if not cg.pids_inside():
                    cg.remove(timeout=0)


class _Run:
    """One live `runsc run`: pumps output, enforces wall time, output caps and cancellation."""

    def __init__(
        self,
        engine: RunscEngine,
        run_id: str,
        workdir: Path,
        request: ExecRequest,
        cgroup: cgroups.RunCgroup,
        on_output: OutputCallback | None,
        on_metrics: MetricsCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.engine, self.run_id, self.workdir = engine, run_id, workdir
        self.request, self.cgroup = request, cgroup
        self.on_output, self.on_metrics, self.cancel = on_output, on_metrics, cancel
        self.caps = {Stream.STDOUT: request.limits.stdout_bytes, Stream.STDERR: request.limits.stderr_bytes}
        self.kept = {Stream.STDOUT: bytearray(), Stream.STDERR: bytearray()}
        self.written = {Stream.STDOUT: 0, Stream.STDERR: 0}
        self.kill_reason: Reason | None = None
        self.killed_at: float | None = None
        self.booted_at: float | None = None

    def wait(self) -> ExecResult:
        pidfile = self.workdir / "runsc.pid"
        cmd = self.engine.runsc_command(
            self.workdir, self.run_id, "run", "--bundle", str(self.workdir), "--pid-file", str(pidfile), self.run_id
        )
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CRUCIBLE_CGROUP_PROCS": " ".join(self.cgroup.procs_files)}
        started = time.monotonic()
        with open(self.workdir / "stdin", "rb") as stdin:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", _JOIN_CGROUP, "sh", *cmd],
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,  # runsc gets nothing of the worker's environment
                start_new_session=True,
                close_fds=True,
            )
        try:
            self._pump(proc, started, pidfile)
        finally:
            if proc.poll() is None:
                self._kill(proc, None)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            for f in (proc.stdout, proc.stderr):
                if f:
                    f.close()
        ended = time.monotonic()
        stats = self.cgroup.stats()
        return self._result(proc.returncode, stats, started, ended)

    def _pump(self, proc: subprocess.Popen[bytes], started: float, pidfile: Path) -> None:
        sel = selectors.DefaultSelector()
        for stream, pipe in ((Stream.STDOUT, proc.stdout), (Stream.STDERR, proc.stderr)):
            assert pipe is not None
            os.set_blocking(pipe.fileno(), False)
            sel.register(pipe.fileno(), selectors.EVENT_READ, stream)
        deadline = started + self.request.limits.wall_seconds
        next_metrics = started + METRICS_EVERY
        exited_at: float | None = None
        try:
            while True:
                now = time.monotonic()
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                # The run ends when the sandbox exits, not at EOF: drain what is buffered, briefly.
                if exited_at is not None and (not sel.get_map() or now - exited_at > 1.0):
                    return
                events = sel.select(timeout=POLL_SECONDS if exited_at is None else 0.01) if sel.get_map() else []
                if not events and exited_at is not None:
                    return
                for key, _ in events:
                    try:
                        chunk = os.read(key.fd, READ_CHUNK)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(key.fd)
                        continue
                    self._take(proc, key.data, chunk)
                if exited_at is not None:
                    continue
                now = time.monotonic()
                if self.booted_at is None and pidfile.exists():
                    self.booted_at = now
                if self.cancel is not None and self.cancel.is_set():
                    self._kill(proc, Reason.CANCELLED)
                elif now >= deadline:
                    self._kill(proc, Reason.TIMEOUT)
                if self.killed_at is not None and now - self.killed_at > KILL_GRACE_SECONDS:
                    # runsc kill did not end it (e.g. the container was not created yet).
                    self.cgroup.kill_all()
                if self.on_metrics is not None and now >= next_metrics:
                    next_metrics = now + METRICS_EVERY
                    s = self.cgroup.stats()
                    self.on_metrics(MetricSample(now - started, s.cpu_seconds, s.memory_bytes, s.pids))
        finally:
            sel.close()

    def _take(self, proc: subprocess.Popen[bytes], stream: Stream, chunk: bytes) -> None:
        offset = self.written[stream]
        self.written[stream] += len(chunk)
        room = self.caps[stream] - len(self.kept[stream])
        part = chunk[: max(0, room)]
        if part:
            self.kept[stream] += part
            if self.on_output is not None:
                self.on_output(stream, offset, part)
        if len(chunk) > room:
            # At the cap: stop the sandbox, but keep draining so it cannot block on a full pipe.
            self._kill(proc, Reason.OUTPUT_LIMIT)

    def _kill(self, proc: subprocess.Popen[bytes], reason: Reason | None) -> None:
        if self.killed_at is not None:
            return
        self.kill_reason = reason
        self.killed_at = time.monotonic()
        try:
            self.engine.kill(self.workdir, self.run_id)
        except (subprocess.SubprocessError, OSError):
            self.cgroup.kill_all()

    def _result(self, returncode: int, stats: cgroups.CgroupStats, started: float, ended: float) -> ExecResult:
        detail = ""
        exit_code: int | None = returncode
        signal_no: int | None = None
        started_ok = self.booted_at is not None or (self.workdir / "runsc.pid").exists()
        if self.kill_reason == Reason.CANCELLED:
            status, reason, detail = Status.CANCELLED, Reason.CANCELLED, "cancelled"
        elif stats.oom_killed:
            status, reason = Status.FAILED, Reason.MEMORY_LIMIT
            detail = f"memory limit of {self.request.limits.memory_bytes} bytes exceeded"
        elif self.kill_reason == Reason.OUTPUT_LIMIT:
            status, reason = Status.FAILED, Reason.OUTPUT_LIMIT
            over = [s.value for s in Stream if self.written[s] > self.caps[s]]
            detail = f"output limit exceeded on {', '.join(over)}"
        elif self.kill_reason == Reason.TIMEOUT:
            status, reason = Status.FAILED, Reason.TIMEOUT
            detail = f"wall-time limit of {self.request.limits.wall_seconds:g} s exceeded"
        elif not started_ok:
            status, reason = Status.ERROR, Reason.SANDBOX_ERROR
            tail = bytes(self.kept[Stream.STDERR][-2000:]).decode("utf-8", "replace")
            detail = f"the sandbox did not start (runsc exit {returncode}): {tail}"
            exit_code = None
        elif returncode == 0:
            status, reason = Status.SUCCEEDED, None
        elif stats.pids_limit_hit:
            status, reason, detail = Status.FAILED, Reason.PIDS_LIMIT, "process limit reached"
        else:
            status, reason = Status.FAILED, Reason.EXIT_CODE
            detail = f"exited with code {returncode}"
        if returncode < 0:
            signal_no = -returncode  # runsc itself was killed
        elif 128 < returncode < 160:
            signal_no = returncode - 128  # the program died of a signal (or exited with 129-159)
        if self.kill_reason is not None:
            exit_code = None  # we ended it; its exit code says nothing about the program
        boot = None if self.booted_at is None else self.booted_at - started
        return ExecResult(
            status=status,
            reason=reason,
            exit_code=exit_code,
            signal=signal_no,
            stdout=self._stream(Stream.STDOUT),
            stderr=self._stream(Stream.STDERR),
            usage=Usage(cpu_seconds=stats.cpu_seconds, peak_memory_bytes=stats.peak_memory_bytes),
            timings=Timings(boot_seconds=boot, run_seconds=ended - started),
            engine=self.engine.name,
            runtime_version=self.engine.runtime_version(),
            image_digest="",
            detail=detail,
        )

    def _stream(self, stream: Stream) -> StreamResult:
        return StreamResult(
            data=bytes(self.kept[stream]),
            bytes_written=self.written[stream],
            truncated=self.written[stream] > self.caps[stream],
        )


def _with_teardown(result: ExecResult, seconds: float, digest: str) -> ExecResult:
    import dataclasses

    timings = dataclasses.replace(result.timings, teardown_seconds=seconds)
    return dataclasses.replace(result, timings=timings, image_digest=digest)


def oci_spec(request: ExecRequest, rootfs: Path, code_dir: Path) -> dict[str, Any]:
    limits = request.limits
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": GUEST_MOUNT,  # sitecustomize.py: complete writes to stdout/stderr
    }
    env.update(request.env)

    def rlimit(kind: str, value: int) -> dict[str, Any]:
        return {"type": kind, "hard": value, "soft": value}

    return {
        "ociVersion": "1.0.0",
        "process": {
            "terminal": False,
            "user": {"uid": SANDBOX_UID, "gid": SANDBOX_UID},
            "args": ["/usr/bin/python3", "-u", f"/code/{request.entrypoint}", *request.argv],
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": "/code",
            "capabilities": {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")},
            "rlimits": [
                rlimit("RLIMIT_NPROC", limits.processes),
                rlimit("RLIMIT_FSIZE", limits.file_size_bytes),
                rlimit("RLIMIT_NOFILE", limits.open_files),
                rlimit("RLIMIT_CORE", 0),
            ],
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
                "destination": "/code",
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
