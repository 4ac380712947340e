"""Start the real Crucible processes — daphne (web), Celery workers and, if asked, the reconciler
(`manage.py reconcile`) — for tests and benchmarks.

    from tests.support.stack import Stack

    with Stack(env={"CRUCIBLE_DATABASE_URL": ..., "CRUCIBLE_REDIS_URL": ...}, log_dir=tmp) as stack:
        requests.get(stack.url("/api/v1/runs/"), ...)

`Stack` is a context manager: entering starts the processes from the repository's .venv/bin and
returns once the web server answers HTTP and each worker has logged "<name> ready." (Celery logs
that after its worker_ready handlers ran, i.e. once it consumes from the queue); leaving stops
them all: SIGTERM to each process group, then SIGKILL to whatever is left after `stop_timeout`.

Each process runs in a session (process group) of its own, so the stop also reaches the Celery
pool children, as a process manager's would. (runsc runs in a session of its own, outside the
worker's group: what becomes of a sandbox when its worker stops or dies is the worker's and the
engine's business, which tests/faults checks.)

Output (stdout and stderr) goes to `<log_dir>/web.log` and `<log_dir>/worker.log` (further workers:
`worker-<n>.log`; the reconciler: `reconciler.log`); `StackError` (a process that did not start)
carries the tail of the relevant log.

Fault tests start more workers (`start_worker`), kill them (`kill`: a signal to the process group)
and start them again under the same node name (`restart_worker`).

Nothing here imports Django: the processes get their whole configuration from `env`, which is
laid over this process's environment (a value of None removes a variable).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"


class StackError(RuntimeError):
    """A process did not start (or died while starting); the message carries its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def log_tail(path: Path, max_bytes: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<no log: {exc}>"


def child_env(env: Mapping[str, str | None]) -> dict[str, str]:
    """This process's environment with `env` laid over it (None removes a variable), for a child."""
    merged = dict(os.environ)
    for key, value in env.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    merged.setdefault("DJANGO_SETTINGS_MODULE", "crucible_site.settings")
    merged["PYTHONUNBUFFERED"] = "1"
    # A pytest parent's variables mean nothing to the children.
    for key in [k for k in merged if k.startswith("PYTEST_")]:
        del merged[key]
    return merged


class Process:
    """One child in its own process group, output appended to a log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path, log_path: Path) -> None:
        self.name, self.argv, self.log_path = name, argv, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_offset = log_path.stat().st_size if log_path.exists() else 0  # where this start's output begins
        self.node, self.concurrency = "", 0  # a Celery worker's node name (-n) and concurrency
        self._log = open(log_path, "ab", buffering=0)
        self._log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(argv)}\n".encode())
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches the pool children too
        )
        self.pgid = self.popen.pid  # a session leader's pgid is its pid

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def terminate(self) -> None:
        self._signal_group(signal.SIGTERM)

    def kill_group(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> int | None:
        """Send `sig` to the whole process group and wait for the group's leader to exit."""
        self._signal_group(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)
        return self.popen.returncode

    def log_since_start(self) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            return f.read().decode("utf-8", "replace")

    def wait_stopped(self, timeout: float) -> int | None:
        """Wait up to `timeout` for every group member to go, then SIGKILL the group; close the log."""
        if self._log.closed:
            return self.popen.returncode
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.popen.poll()  # reap the leader so it does not linger as a zombie group member
            if not self._group_alive():
                break
            time.sleep(0.05)
        else:
            self._log.write(f"=== {self.name}: still running {timeout:g}s after SIGTERM; SIGKILL\n".encode())
            self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._log.write(f"=== stopped: exit {self.popen.returncode}\n".encode())
        self._log.close()
        return self.popen.returncode

    def stop(self, timeout: float) -> int | None:
        """SIGTERM the group, wait up to `timeout` for every member to go, then SIGKILL the group."""
        self.terminate()
        return self.wait_stopped(timeout)


_Process = Process  # its earlier name


class Stack:
    """daphne + a Celery worker, started with `env`, as a context manager.

    env: laid over os.environ for both processes (None removes a variable). Pass at least
        CRUCIBLE_DATABASE_URL and CRUCIBLE_REDIS_URL; usually CRUCIBLE_VAR_DIR too.
    log_dir: where web.log and worker.log go (created).
    port: the web port; a free one by default.
    concurrency, queues: passed to `celery worker`.
    worker_name: Celery node name (-n) of the first worker; unique per stack by default.
    workers: how many workers start with the stack (0: none; `start_worker` adds them later).
    reconciler: also start `manage.py reconcile` (its readiness is not awaited, only that it runs).
    web_env: laid over `env` for daphne only (e.g. a var dir of its own, as on a host of its own).
    web_processes: daphnes accepting on the one port (`crucible_site.web --processes`).
    ready_path: the URL path polled until the web server answers (any HTTP status below 500).
    start_timeout: seconds each process gets to become ready; stop_timeout: SIGTERM grace.
    """

    def __init__(
        self,
        env: Mapping[str, str | None],
        *,
        log_dir: Path | str,
        host: str = "127.0.0.1",
        port: int | None = None,
        concurrency: int = 2,
        queues: str = "runs,webhooks",
        worker_name: str | None = None,
        workers: int = 1,
        reconciler: bool = False,
        loglevel: str = "INFO",
        ready_path: str = "/login/",
        start_timeout: float = 60.0,
        stop_timeout: float = 15.0,
        venv_bin: Path = VENV_BIN,
        cwd: Path = REPO_ROOT,
        web_env: Mapping[str, str | None] | None = None,
        web_processes: int = 1,
    ) -> None:
        self.env = child_env(env)
        self._overlay = dict(env)  # what further per-process overlays go on top of
        self.web_env = child_env({**env, **(web_env or {})})
        self.web_processes = web_processes
        self.log_dir = Path(log_dir)
        self.host, self.port = host, port
        self.concurrency, self.queues = concurrency, queues
        self.worker_name = worker_name or f"crucible-stack-{os.getpid()}-{id(self):x}@%h"
        self.initial_workers, self.with_reconciler = workers, reconciler
        self.loglevel = loglevel
        self.ready_path = ready_path
        self.start_timeout, self.stop_timeout = start_timeout, stop_timeout
        self.venv_bin, self.cwd = Path(venv_bin), Path(cwd)
        self.web: Process | None = None
        self.workers: list[Process] = []  # every worker started, the stopped and killed ones too
        self.reconciler: Process | None = None
        self._worker_serial = 0

    @property
    def worker(self) -> Process | None:
        """The first worker (None when the stack has none, or is stopped)."""
        return self.workers[0] if self.workers else None

    # -- addresses and logs ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise StackError("the stack is not started")
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def web_log(self) -> Path:
        return self.log_dir / "web.log"

    @property
    def worker_log(self) -> Path:
        return self.log_dir / "worker.log"

    @property
    def reconciler_log(self) -> Path:
        return self.log_dir / "reconciler.log"

    def worker_logs(self) -> list[Path]:
        """Every worker's log file (a restarted worker appends to its own)."""
        return sorted({p.log_path for p in self.workers} | {self.worker_log}, key=str)

    def logs(self, max_bytes: int = 4000) -> str:
        """Tails of every log, for assertion messages."""
        paths = [self.web_log, *self.worker_logs()]
        if self.reconciler is not None or self.reconciler_log.exists():
            paths.append(self.reconciler_log)
        return "\n".join(f"--- {p.name} ({p}) ---\n{log_tail(p, max_bytes)}" for p in paths if p.exists())

    # -- life cycle --------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            # All start at once (each takes about a second to import Django); then wait for all.
            started = [self._spawn_worker() for _ in range(self.initial_workers)]
            if self.with_reconciler:
                self.start_reconciler()
            self._start_web()
            for proc in started:
                self._wait_worker_ready(proc)
            if self.reconciler is not None and not self.reconciler.running():
                raise StackError(
                    f"the reconciler exited with {self.reconciler.popen.returncode}\n{log_tail(self.reconciler_log)}"
                )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything (idempotent): SIGTERM to every group at once, then wait (SIGKILL at the timeout)."""
        procs = [p for p in (*self.workers, self.reconciler, self.web) if p is not None]
        for proc in procs:
            if proc.running():
                proc.terminate()
        for proc in procs:
            proc.wait_stopped(self.stop_timeout)
        self.workers, self.web, self.reconciler = [], None, None

    # -- workers and the reconciler ----------------------------------------------------------------

    def start_worker(
        self,
        name: str | None = None,
        *,
        concurrency: int | None = None,
        wait: bool = True,
        env: Mapping[str, str | None] | None = None,
        prefix: Sequence[str] = (),
    ) -> Process:
        """Start one more worker (node `name`, default `<stack's name>-<n>`); wait until it is ready.
        `env` is laid over the stack's for this worker only; `prefix` goes before its command (e.g.
        `unshare --mount ...`: it must exec the command, so the worker keeps the pid it started with)."""
        proc = self._spawn_worker(name, concurrency=concurrency, env=env, prefix=prefix)
        if wait:
            self._wait_worker_ready(proc)
        return proc

    def restart_worker(self, old: Process, *, wait: bool = True) -> Process:
        """Start a worker again with the node name, concurrency and log of `old` (stopped or killed)."""
        if old.running():
            raise StackError(f"worker {old.node} is still running")
        old.wait_stopped(0)
        proc = self._spawn_worker(old.node, concurrency=old.concurrency, log_path=old.log_path)
        if wait:
            self._wait_worker_ready(proc)
        return proc

    def kill(self, proc: Process, sig: int = signal.SIGKILL, timeout: float = 10.0) -> int | None:
        """Send `sig` to the process group of one of this stack's processes; wait for its leader to exit."""
        return proc.kill_group(sig, timeout)

    def live_workers(self) -> list[Process]:
        return [p for p in self.workers if p.running()]

    def start_reconciler(self) -> Process:
        argv = [str(self.venv_bin / "python"), "manage.py", "reconcile"]
        self.reconciler = Process("reconciler", argv, self.env, self.cwd, self.reconciler_log)
        return self.reconciler

    def _spawn_worker(
        self,
        name: str | None = None,
        *,
        concurrency: int | None = None,
        log_path: Path | None = None,
        env: Mapping[str, str | None] | None = None,
        prefix: Sequence[str] = (),
    ) -> Process:
        self._worker_serial += 1
        if name is None:
            base, _, host = self.worker_name.partition("@")
            name = self.worker_name if self._worker_serial == 1 else f"{base}-{self._worker_serial}@{host or '%h'}"
        if log_path is None:
            first = self._worker_serial == 1
            log_path = self.worker_log if first else self.log_dir / f"worker-{self._worker_serial}.log"
        concurrency = concurrency or self.concurrency
        argv = [
            *prefix,
            str(self.venv_bin / "celery"), "-A", "crucible_site", "worker",
            "-Q", self.queues,
            "--concurrency", str(concurrency),
            "-n", name,
            "--loglevel", self.loglevel,
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        worker_env = self.env if env is None else child_env({**self._overlay, **env})
        proc = Process("worker", argv, worker_env, self.cwd, log_path)
        proc.node, proc.concurrency = name, concurrency
        self.workers.append(proc)
        return proc

    def _start_web(self) -> None:
        fixed_port = self.port is not None
        for attempt in range(3):
            if not fixed_port:
                self.port = free_port(self.host)
            argv = [
                # daphne, with its options, through the entry point that limits request bodies.
                str(self.venv_bin / "python"), "-m", "crucible_site.web", "--processes", str(self.web_processes),
                "-b", self.host, "-p", str(self.port), "crucible_site.asgi:application",
            ]  # fmt: skip
            # As the Procfile does: the web's default allowed origin is the URL it serves.
            env = {**self.web_env, "CRUCIBLE_HOST": self.host, "CRUCIBLE_PORT": str(self.port)}
            self.web = Process("web", argv, env, self.cwd, self.web_log)
            try:
                self._wait_web_ready()
                return
            except StackError:
                # Another process may have taken the free port between our probe and daphne's bind.
                lost_race = "Address already in use" in log_tail(self.web_log)
                self.web.stop(self.stop_timeout)
                self.web = None
                if fixed_port or not lost_race or attempt == 2:
                    raise

    def _wait_web_ready(self) -> None:
        assert self.web is not None
        deadline = time.monotonic() + self.start_timeout
        url = self.url(self.ready_path)
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not self.web.running():
                raise StackError(
                    f"daphne exited with {self.web.popen.returncode} while starting\n{log_tail(self.web_log)}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
                time.sleep(0.1)
                continue
            if status < 500:
                return
            last = f"HTTP {status}"
            time.sleep(0.1)
        raise StackError(
            f"daphne did not answer {url} within {self.start_timeout:g}s ({last})\n{log_tail(self.web_log)}"
        )

    def _wait_worker_ready(self, proc: Process) -> None:
        node = proc.node.replace("%h", socket.gethostname())
        marker = f"{node} ready.".encode()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            with open(proc.log_path, "rb") as f:
                f.seek(proc.log_offset)
                if marker in f.read():
                    return
            if not proc.running():
                code = proc.popen.returncode
                hint = " (78: the worker refused to start without a sandbox)" if code == 78 else ""
                raise StackError(f"the Celery worker exited with {code}{hint}\n{log_tail(proc.log_path)}")
            time.sleep(0.05)
        raise StackError(
            f"the Celery worker did not log {marker.decode()!r} within {self.start_timeout:g}s\n"
            f"{log_tail(proc.log_path)}"
        )
