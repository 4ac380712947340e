"""The docker engine: one container per request through the docker SDK, with gVisor as its runtime.

The same sandbox as the runsc engine, reached through dockerd, with a cgroup of our own as the
container's parent (OOM evidence survives runsc). Details: docs/sandbox.md, "The docker engine";
dockerd must have runsc registered as a runtime with `--network=none` (sandbox/docker/daemon.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox import cgroups, workdirs
from sandbox.contract import (
    ExecRequest,
    ExecResult,
    OutputCallback,
    Reason,
    Status,
    StreamResult,
    Timings,
    Usage,
)
from sandbox.docker import attach
from sandbox.engine import EngineConfig, ExecutionEngine, Finding, MetricSample, MetricsCallback
from sandbox.errors import EngineUnavailable, SandboxError
from sandbox.guest_env import GUEST_DIR, GUEST_MOUNT, guest_environment
from sandbox.gvisor import CODE_MOUNT, SANDBOX_UID, SENTRY_OVERHEAD_BYTES, python_command
from sandbox.images import DEFAULT_IMAGE, Image, image_named
from sandbox.janitor import Janitor, Spec
from sandbox.process_count import GuestProcesses, ProcessSamples, control_socket
from sandbox.pump import OutputPump
from sandbox.verdict import decide, exec_result, with_teardown

logger = logging.getLogger(__name__)

# Names this engine's work dirs, containers and cgroups; no engine's prefix starts another's.
RUN_PREFIX = "crucible-docker-"
RUNTIME = "runsc"
LABEL_ENGINE = "crucible.engine"
LABEL_STATE_DIR = "crucible.state-dir"
LABEL_DIGEST = "crucible.rootfs-digest"
# The container's own memory limit sits this far above the run cgroup's, so ours binds first.
CONTAINER_MEMORY_SLACK = 16 * 1024 * 1024
# A peak within this of the run cgroup's limit counts as having reached it.
AT_LIMIT_BYTES = 1024 * 1024
REKILL_EVERY = 1.0
# After this long without exiting despite kills, the container is removed outright.
REMOVE_AFTER_KILL = 3.0

PACKAGE_HINT = "the docker engine needs the docker Python package: pip install -r requirements.txt (docker==7.2.0)"


def _start_hint(url: str) -> str:
    return (
        f"dockerd does not answer at {url}. Install it with `apt-get install docker.io` "
        "(scripts/system-deps.sh --with-docker) and start one with runsc registered as a runtime: "
        "`python -m sandbox.docker.daemon start` (then EngineConfig.docker_url = the URL it prints)"
    )


class DockerEngine(ExecutionEngine):
    name = "docker"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._client: Any = None
        self._version: str | None = None
        self._runtime_path: str | None = None
        self._imported: set[str] = set()
        self._lock = threading.Lock()
        # Removes this process's containers should it die or hang (sandbox/janitor.py).
        self._janitor = Janitor()

    # -- environment -----------------------------------------------------------------------------

    def _api(self) -> Any:
        """The docker SDK's low-level client, connected on first use."""
        with self._lock:
            if self._client is None:
                try:
                    import docker
                except ImportError:
                    raise EngineUnavailable(PACKAGE_HINT) from None
                try:
                    self._client = docker.APIClient(base_url=self.config.docker_url, version="auto", timeout=60)
                except docker.errors.DockerException as exc:
                    raise EngineUnavailable(f"{_start_hint(self.config.docker_url)} ({exc})") from exc
            return self._client

    def check(self) -> None:
        api = self._api()
        try:
            runtimes = api.info().get("Runtimes") or {}
        except Exception as exc:  # requests' and docker's errors alike: the daemon is not there
            raise EngineUnavailable(f"{_start_hint(self.config.docker_url)} ({exc})") from exc
        if RUNTIME not in runtimes:
            raise EngineUnavailable(
                f"dockerd at {self.config.docker_url} has no {RUNTIME!r} runtime; add to its daemon.json: "
                '"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]}}'
            )
        self._image_tag(image_named(self.config.images_dir, DEFAULT_IMAGE))

    def runtime_version(self) -> str:
        if self._version is None:
            server = self._api().version().get("Version", "unknown")
            try:
                out = subprocess.run([self.runtime_path(), "--version"], capture_output=True, text=True, timeout=10)
                runsc = (out.stdout.splitlines() or ["runsc unknown"])[0].strip()
            except (OSError, subprocess.SubprocessError):
                runsc = "runsc unknown"
            self._version = f"docker {server}, {runsc}"
        return self._version

    def host_findings(self) -> list[Finding]:
        return [cgroups.layout_finding()]  # each run's cgroup (the container's parent) is ours to make and read

    def runtime_path(self) -> str:
        """The runsc binary dockerd runs (its daemon.json may name another than ours)."""
        if self._runtime_path is None:
            path = (self._api().info().get("Runtimes") or {}).get(RUNTIME, {}).get("path", RUNTIME)
            self._runtime_path = shutil.which(path) or path
        return self._runtime_path

    def _image_tag(self, image: Image) -> str:
        """`crucible/<name>:<digest prefix>`, imported from the image's rootfs unless dockerd has it."""
        tag = f"crucible/{image.name}:{image.digest.removeprefix('sha256:')[:16]}"
        if tag in self._imported:
            return tag
        api = self._api()
        # One import per digest, even with several workers starting at once.
        with open(self.config.images_dir / ".docker-import.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self._has_image(api, tag, image.digest):
                with tempfile.TemporaryDirectory(prefix=".docker-import-", dir=self.config.images_dir) as tmp:
                    tar_path = Path(tmp) / "rootfs.tar"
                    with tarfile.open(tar_path, "w") as tar:
                        tar.add(str(image.rootfs), arcname=".")
                    repository, _, version = tag.partition(":")
                    api.import_image_from_file(
                        str(tar_path),
                        repository=repository,
                        tag=version,
                        changes=[f"LABEL {LABEL_DIGEST}={image.digest}"],
                    )
                if not self._has_image(api, tag, image.digest):
                    raise SandboxError(f"docker import of {image.rootfs} did not produce {tag}")
        self._imported.add(tag)
        return tag

    @staticmethod
    def _has_image(api: Any, tag: str, digest: str) -> bool:
        import docker

        try:
            labels = api.inspect_image(tag).get("Config", {}).get("Labels") or {}
        except docker.errors.ImageNotFound:
            return False
        return bool(labels.get(LABEL_DIGEST) == digest)

    @property
    def cgroup_parent(self) -> str:
        # A sibling of the runsc engine's parent: its sweep and leak checks never see containers.
        return f"{self.config.cgroup_parent}-docker"

    # -- running ---------------------------------------------------------------------------------

    def execute(
        self,
        request: ExecRequest,
        *,
        on_output: OutputCallback | None = None,
        on_metrics: MetricsCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        api = self._api()
        image = image_named(self.config.images_dir, request.image)
        tag = self._image_tag(image)
        run_id = RUN_PREFIX + secrets.token_hex(8)
        spec = {
            "kind": "docker",
            "workdir": str(self.config.state_dir / run_id),
            "cgroup_parent": self.cgroup_parent,
            "docker_url": self.config.docker_url,
        }
        self._janitor.add(run_id, spec)
        try:
            # The sweep spares a run's container and work dir while this lock is held.
            workdir, lock = workdirs.create(self.config.state_dir, run_id)
        except BaseException:
            self._janitor.remove(run_id)
            raise
        container_id: str | None = None
        cgroup = cgroups.RunCgroup(self.cgroup_parent, run_id)
        try:
            code = workdirs.write_code(workdir, request, reader=SANDBOX_UID)
            workdir.chmod(0o711)  # runsc's gofer reads code/ on the sandbox's behalf
            cgroups.parent_weigh(self.cgroup_parent, self.config.sandboxes_cpu_weight)
            cgroup.create(
                memory_bytes=request.limits.memory_bytes + SENTRY_OVERHEAD_BYTES, cpu_cores=request.limits.cpu_cores
            )
            host_config = self._host_config(request, code, f"/{self.cgroup_parent}/{run_id}")
            container_id = api.create_container(
                tag, name=run_id, **self._container_config(request), host_config=host_config
            )["Id"]
            run = _Run(self, api, container_id, request, cgroup, on_output, on_metrics, cancel)
            result = run.wait()
            teardown_started = time.monotonic()
            self._teardown(api, run_id, container_id, workdir)
            return with_teardown(result, time.monotonic() - teardown_started, image.digest)
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the original error is the one worth reporting
                self._teardown(api, run_id, container_id, workdir)
            if _is_docker_error(exc):
                raise SandboxError(f"dockerd at {self.config.docker_url} failed: {exc}") from exc
            raise
        finally:
            lock.close()
            self._janitor.remove(run_id)

    def close(self) -> None:
        self._janitor.close()

    def _container_config(self, request: ExecRequest) -> dict[str, Any]:
        return {
            "command": python_command(request),
            "user": f"{SANDBOX_UID}:{SANDBOX_UID}",
            "working_dir": CODE_MOUNT,
            "environment": guest_environment(request, home="/tmp", guest_dir=GUEST_MOUNT),
            "hostname": "sandbox",
            # Attached stdin (closed after the request's bytes): docker sets StdinOnce with it.
            "stdin_open": True,
            "labels": {LABEL_ENGINE: self.name, LABEL_STATE_DIR: str(self.config.state_dir)},
        }

    def _host_config(self, request: ExecRequest, code: Path, cgroup_parent: str) -> Any:
        from docker.types import LogConfig, Mount, Ulimit

        limits = request.limits
        memory = limits.memory_bytes + SENTRY_OVERHEAD_BYTES + CONTAINER_MEMORY_SLACK
        return self._api().create_host_config(
            runtime=RUNTIME,
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": f"size={limits.tmp_bytes},mode=1777,nosuid,nodev"},
            mounts=[
                Mount(CODE_MOUNT, str(code), type="bind", read_only=True),
                Mount(GUEST_MOUNT, str(GUEST_DIR), type="bind", read_only=True),
            ],
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit=memory,
            memswap_limit=memory,  # no swap
            nano_cpus=max(1, int(limits.cpu_cores * 1e9)),
            # A small pids limit crashes runsc (its own threads count): processes are limited by
            # RLIMIT_NPROC inside the sandbox, this is only a backstop.
            pids_limit=cgroups.PIDS_BACKSTOP,
            ulimits=[
                Ulimit(name="nproc", soft=limits.processes, hard=limits.processes),
                Ulimit(name="fsize", soft=limits.file_size_bytes, hard=limits.file_size_bytes),
                Ulimit(name="nofile", soft=limits.open_files, hard=limits.open_files),
                Ulimit(name="core", soft=0, hard=0),
            ],
            cgroup_parent=cgroup_parent,
            log_config=LogConfig(type="none"),
        )

    def _teardown(self, api: Any, name: str, container_id: str | None, workdir: Path) -> None:
        import docker

        with contextlib.suppress(docker.errors.NotFound):
            try:
                api.remove_container(container_id or name, force=True, v=True)
            except docker.errors.APIError:
                # "removal already in progress" and the like: try once more after a moment.
                time.sleep(0.2)
                with contextlib.suppress(docker.errors.APIError):
                    api.remove_container(container_id or name, force=True, v=True)
        # The container is gone: whatever is still in the run's cgroups (a runsc that failed to
        # start, say) is a stray. runsc also made the run's directory in hierarchies we do not
        # manage (devices, freezer, ...).
        cgroups.remove_cgroup_dirs(f"{self.cgroup_parent}/{name}", kill=True, timeout=2.0)
        shutil.rmtree(workdir, ignore_errors=True)

    def sweep(self) -> None:
        """Remove containers and work dirs of runs whose worker died (their lock is free)."""
        api = self._api()
        state_dir = self.config.state_dir
        live = workdirs.sweep(state_dir, RUN_PREFIX, lambda workdir: self._teardown(api, workdir.name, None, workdir))
        for info in api.containers(all=True, filters={"label": f"{LABEL_STATE_DIR}={state_dir}"}):
            name = (info.get("Names") or ["/"])[0].lstrip("/")
            # A run makes its work dir before its container and removes it after: a container
            # without one was left by a dead worker.
            if name.startswith(RUN_PREFIX) and name not in live and not (state_dir / name).exists():
                self._teardown(api, name, info["Id"], state_dir / name)
        for name in cgroups.leftover_names(self.cgroup_parent):
            if name.startswith(RUN_PREFIX) and not (state_dir / name).exists():
                # No work dir here: it may be a live run of an engine with another state dir, so
                # only an empty cgroup old enough to have been joined is removed, and nothing is killed.
                if cgroups.RunCgroup(self.cgroup_parent, name).age() >= cgroups.ORPHAN_MIN_AGE_SECONDS:
                    cgroups.remove_cgroup_dirs(f"{self.cgroup_parent}/{name}")  # leaves it if anything is inside


def clean_up(run_id: str, spec: Spec) -> None:
    """The janitor's teardown of a run whose owner died or overran (sandbox/janitor.py)."""
    with contextlib.suppress(OSError, http.client.HTTPException):
        _remove_container(spec["docker_url"], run_id)
    cgroups.remove_cgroup_dirs(f"{spec['cgroup_parent']}/{run_id}", kill=True, timeout=2.0)
    shutil.rmtree(spec["workdir"], ignore_errors=True)


def _remove_container(url: str, name: str) -> None:
    """`docker rm --force --volumes` through dockerd's API itself: the janitor does not load the docker SDK."""
    parsed = urllib.parse.urlsplit(url)
    conn: http.client.HTTPConnection
    if parsed.scheme in ("unix", "http+unix"):
        conn = _UnixHTTPConnection(parsed.path)
    elif parsed.scheme in ("tcp", "http") and parsed.hostname:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 2375, timeout=30)
    else:
        return  # TLS: the container is left to the next sweep, which has the SDK
    try:
        conn.request("DELETE", f"/containers/{urllib.parse.quote(name)}?force=1&v=1")
        conn.getresponse().read()
    finally:
        conn.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _is_docker_error(exc: BaseException) -> bool:
    """An error of dockerd or of the connection to it (the SDK raises requests' errors for those)."""
    import docker
    import requests

    return isinstance(exc, (docker.errors.DockerException, requests.exceptions.RequestException))


class _Run:
    """One started container: stdin in, framed output split into pipes for the OutputPump, verdict."""

    def __init__(
        self,
        engine: DockerEngine,
        api: Any,
        container_id: str,
        request: ExecRequest,
        cgroup: cgroups.RunCgroup,
        on_output: OutputCallback | None,
        on_metrics: MetricsCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.engine, self.api, self.id, self.request = engine, api, container_id, request
        self.on_output, self.on_metrics, self.cancel = on_output, on_metrics, cancel
        self.cgroup = cgroup
        self.exited = threading.Event()
        self.exit_code: int | None = None
        self.wait_error: str | None = None
        self.last_kill = 0.0
        self.removed = False
        self.killed_at: float | None = None
        self.guest: GuestProcesses | None = None

    def wait(self) -> ExecResult:
        import docker

        limits = self.request.limits
        if self.cancel is not None and self.cancel.is_set():
            return self._cancelled_before_start()
        # Attached before start, so not one byte of output is missed.
        attached = self.api.attach_socket(self.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        # The SDK hands back the socket.SocketIO of the hijacked HTTP connection; selectors need the socket.
        sock: socket.socket = getattr(attached, "_sock", attached)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        demux = threading.Thread(target=attach.demux, args=(sock, out_w, err_w), daemon=True)
        feeder = threading.Thread(target=attach.feed_stdin, args=(sock, self.request.stdin), daemon=True)
        started = time.monotonic()
        booted_at: float | None = None
        pump: OutputPump | None = None
        try:
            demux.start()
            # From now on the janitor removes the container by itself should this process hang.
            janitor, name = self.engine._janitor, self.cgroup.name  # the run id, the container's name
            janitor.deadline(name, limits.wall_seconds + self.engine.config.backstop_grace_seconds)
            try:
                self.api.start(self.id)
            except docker.errors.APIError as exc:
                return self._did_not_start(exc, started)
            logger.info("sandbox %s started", name)
            booted_at = time.monotonic()
            self.guest = self._guest_processes()
            if self.guest is not None:
                self.guest.booted(booted_at)
            feeder.start()
            threading.Thread(target=self._wait_exit, daemon=True).start()
            pump = OutputPump(
                stdout=out_r,
                stderr=err_r,
                exited=self.exited.is_set,
                kill=self._kill,
                force_kill=self._force_kill,
                wall_seconds=limits.wall_seconds,
                stdout_cap=limits.stdout_bytes,
                stderr_cap=limits.stderr_bytes,
                on_output=self.on_output,
                on_metrics=self.on_metrics,
                sample=self._sample,
                cancel=self.cancel,
                tick=self._tick,
                started=started,
            )
            try:
                pump.run()
            finally:
                if not self.exited.is_set():
                    pump.kill(None)
                    self.exited.wait(timeout=5)
                if self.guest is not None:
                    self.guest.finish()
        finally:
            # Pipes first (a demux thread blocked on a full pipe gets EPIPE), then the socket.
            for fd in (out_r, err_r):
                os.close(fd)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            demux.join(timeout=2)
            if feeder.ident is not None:
                feeder.join(timeout=2)
            sock.close()
            attached.close()
        ended = time.monotonic()
        return self._result(pump, self.cgroup.stats(), started, booted_at, ended)

    # -- callbacks of the pump ----------------------------------------------------------------------

    def _wait_exit(self) -> None:
        try:
            # Bounded so a lost daemon cannot hang the run forever; the pump kills long before.
            self.exit_code = int(self.api.wait(self.id, timeout=self.request.limits.wall_seconds + 60)["StatusCode"])
        except Exception as exc:  # the daemon went away, or the container was removed under us
            self.wait_error = str(exc)
        finally:
            self.exited.set()

    def _kill(self) -> None:
        self.killed_at = time.monotonic()
        self._signal_kill()

    def _force_kill(self) -> None:
        """Called on every pump iteration after a kill that has not ended the container yet."""
        now = time.monotonic()
        if self.killed_at is not None and now - self.killed_at > REMOVE_AFTER_KILL and not self.removed:
            self.removed = True
            self._in_background(lambda: self.api.remove_container(self.id, force=True))
        elif now - self.last_kill > REKILL_EVERY:
            self._signal_kill()

    def _signal_kill(self) -> None:
        self.last_kill = time.monotonic()
        self._in_background(lambda: self.api.kill(self.id))

    def _in_background(self, call: Callable[[], object]) -> None:
        """Never from the pump's thread: dockerd finishes a kill only once the container's output
        has been copied out, and that copy waits for the pump to drain the attach stream."""

        def go() -> None:
            with contextlib.suppress(Exception):  # 409 "not running", 404 "gone": both mean done
                call()

        threading.Thread(target=go, daemon=True).start()

    def _guest_processes(self) -> GuestProcesses | None:
        """A sampler of the guest's task count, through the runsc state dir docker's shim uses."""
        import docker

        try:
            pid = int(self.api.inspect_container(self.id)["State"]["Pid"])
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (docker.errors.APIError, KeyError, ValueError, OSError):
            return None  # already gone: there is nothing left to count
        roots = [a.split(b"=", 1)[1].decode() for a in args if a.startswith(b"--root=")]
        if not roots:
            return None
        command = [self.engine.runtime_path(), "--root", roots[0], "events", "--stats", self.id]
        return GuestProcesses(
            command,
            self.request.limits.processes,
            socket_path=control_socket(Path(roots[0]), self.id),
            container_id=self.id,
        )

    def _tick(self, now: float) -> None:
        if self.guest is not None:
            self.guest.poll(now, launch=self.killed_at is None)

    def _sample(self, elapsed: float) -> MetricSample:
        s = self.cgroup.stats()
        # The host cgroup's pids counts gVisor's own threads; the guest's count is runsc's.
        return MetricSample(
            elapsed, s.cpu_seconds, s.memory_bytes, None if self.guest is None else self.guest.counts.latest
        )

    # -- verdict ------------------------------------------------------------------------------------

    def _out_of_memory(self, stats: cgroups.CgroupStats, returncode: int | None, kill_reason: Reason | None) -> bool:
        if stats.oom_killed or self._oom_killed():
            return True
        if kill_reason is not None:
            return False  # we stopped it: the peak alone says nothing about why it ended
        limit = self.request.limits.memory_bytes + SENTRY_OVERHEAD_BYTES
        peak = stats.peak_memory_bytes
        return bool(returncode) and peak is not None and peak >= limit - AT_LIMIT_BYTES

    def _oom_killed(self) -> bool:
        import docker

        try:
            return bool(self.api.inspect_container(self.id)["State"].get("OOMKilled"))
        except docker.errors.APIError:
            return False

    def _result(
        self, pump: OutputPump | None, stats: cgroups.CgroupStats, started: float, booted_at: float | None, ended: float
    ) -> ExecResult:
        assert pump is not None
        limits = self.request.limits
        # As for runsc: refused forks show from the host only as the guest's task count at the limit
        # (see sandbox/process_count.py for what the samples can tell).
        counts = self.guest.counts if self.guest is not None else ProcessSamples(limits.processes)
        verdict = decide(
            pump=pump,
            limits=limits,
            counts=counts,
            returncode=self.exit_code,
            ended=self.killed_at or ended,
            out_of_memory=self._out_of_memory(stats, self.exit_code, pump.kill_reason),
            start_failure=f"lost track of the container: {self.wait_error}",
        )
        return exec_result(
            self.engine,
            pump,
            verdict,
            returncode=self.exit_code,
            usage=Usage(
                cpu_seconds=stats.cpu_seconds, peak_memory_bytes=stats.peak_memory_bytes, peak_processes=counts.peak
            ),
            timings=Timings(
                boot_seconds=None if booted_at is None else booted_at - started, run_seconds=ended - started
            ),
        )

    def _empty_result(self, status: Status, reason: Reason, detail: str, started: float) -> ExecResult:
        empty = StreamResult(data=b"", bytes_written=0, truncated=False)
        return ExecResult(
            status=status,
            reason=reason,
            exit_code=None,
            signal=None,
            stdout=empty,
            stderr=empty,
            usage=Usage(),
            timings=Timings(boot_seconds=None, run_seconds=time.monotonic() - started),
            engine=self.engine.name,
            runtime_version=self.engine.runtime_version(),
            image_digest="",
            detail=detail,
        )

    def _cancelled_before_start(self) -> ExecResult:
        return self._empty_result(Status.CANCELLED, Reason.CANCELLED, "cancelled", time.monotonic())

    def _did_not_start(self, exc: Exception, started: float) -> ExecResult:
        explanation = getattr(exc, "explanation", None) or str(exc)
        return self._empty_result(
            Status.ERROR, Reason.SANDBOX_ERROR, f"the sandbox did not start: {explanation}", started
        )
