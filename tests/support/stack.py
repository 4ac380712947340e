"""Start the real Crucible processes — daphne (web) and a Celery worker — for tests and benchmarks.

    from tests.support.stack import Stack

    with Stack(env={"CRUCIBLE_DATABASE_URL": ..., "CRUCIBLE_REDIS_URL": ...}, log_dir=tmp) as stack:
        requests.get(stack.url("/api/v1/runs/"), ...)

`Stack` is a context manager: entering starts both processes from the repository's .venv/bin and
returns once the web server answers HTTP and the worker has logged "<name> ready." (Celery logs
that after its worker_ready handlers ran, i.e. once it consumes from the queue); leaving stops
both: SIGTERM to each process group, then SIGKILL to whatever is left after `stop_timeout`.

Each process runs in a session (process group) of its own, so the stop also reaches the Celery
pool children. A pool child that gets SIGTERM mid-task ends its run at once: the engine tears the
sandbox down and the run is marked error/sandbox_error, so a stop leaves no sandbox running.
(A SIGKILL would leave it: runsc runs in a session of its own, outside the worker's group; the
next worker's start-up sweep removes such leftovers.)

Output (stdout and stderr) goes to `<log_dir>/web.log` and `<log_dir>/worker.log`; `StackError`
(a process that did not start) carries the tail of the relevant log.

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
from collections.abc import Mapping
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


class _Process:
    """One child in its own process group, output appended to a log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path, log_path: Path) -> None:
        self.name, self.argv, self.log_path = name, argv, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
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

    def wait_stopped(self, timeout: float) -> int | None:
        """Wait up to `timeout` for every group member to go, then SIGKILL the group; close the log."""
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


class Stack:
    """daphne + a Celery worker, started with `env`, as a context manager.

    env: laid over os.environ for both processes (None removes a variable). Pass at least
        CRUCIBLE_DATABASE_URL and CRUCIBLE_REDIS_URL; usually CRUCIBLE_VAR_DIR too.
    log_dir: where web.log and worker.log go (created).
    port: the web port; a free one by default.
    concurrency, queues: passed to `celery worker`.
    worker_name: Celery node name (-n); unique per stack by default.
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
        queues: str = "runs",
        worker_name: str | None = None,
        loglevel: str = "INFO",
        ready_path: str = "/login/",
        start_timeout: float = 60.0,
        stop_timeout: float = 15.0,
        venv_bin: Path = VENV_BIN,
        cwd: Path = REPO_ROOT,
    ) -> None:
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
        self.env = merged
        self.log_dir = Path(log_dir)
        self.host, self.port = host, port
        self.concurrency, self.queues = concurrency, queues
        self.worker_name = worker_name or f"crucible-stack-{os.getpid()}-{id(self):x}@%h"
        self.loglevel = loglevel
        self.ready_path = ready_path
        self.start_timeout, self.stop_timeout = start_timeout, stop_timeout
        self.venv_bin, self.cwd = Path(venv_bin), Path(cwd)
        self.web: _Process | None = None
        self.worker: _Process | None = None

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

    def logs(self, max_bytes: int = 4000) -> str:
        """Tails of both logs, for assertion messages."""
        return (
            f"--- web log ({self.web_log}) ---\n{log_tail(self.web_log, max_bytes)}\n"
            f"--- worker log ({self.worker_log}) ---\n{log_tail(self.worker_log, max_bytes)}"
        )

    # -- life cycle --------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            # Both start at once (each takes about a second to import Django); then wait for both.
            self._spawn_worker()
            self._start_web()
            self._wait_worker_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop both (idempotent): SIGTERM to both groups at once, then wait (SIGKILL at the timeout)."""
        procs = [p for p in (self.worker, self.web) if p is not None]
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait_stopped(self.stop_timeout)
        self.worker = self.web = None

    def _spawn_worker(self) -> None:
        argv = [
            str(self.venv_bin / "celery"), "-A", "crucible_site", "worker",
            "-Q", self.queues,
            "--concurrency", str(self.concurrency),
            "-n", self.worker_name,
            "--loglevel", self.loglevel,
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        self._worker_log_offset = self.worker_log.stat().st_size if self.worker_log.exists() else 0
        self.worker = _Process("worker", argv, self.env, self.cwd, self.worker_log)

    def _start_web(self) -> None:
        fixed_port = self.port is not None
        for attempt in range(3):
            if not fixed_port:
                self.port = free_port(self.host)
            argv = [
                str(self.venv_bin / "daphne"), "-b", self.host, "-p", str(self.port),
                "crucible_site.asgi:application",
            ]  # fmt: skip
            self.web = _Process("web", argv, self.env, self.cwd, self.web_log)
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

    def _wait_worker_ready(self) -> None:
        assert self.worker is not None
        node = self.worker_name.replace("%h", socket.gethostname())
        marker = f"{node} ready.".encode()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            with open(self.worker_log, "rb") as f:
                f.seek(self._worker_log_offset)
                if marker in f.read():
                    return
            if not self.worker.running():
                code = self.worker.popen.returncode
                hint = " (78: the worker refused to start without a sandbox)" if code == 78 else ""
                raise StackError(f"the Celery worker exited with {code}{hint}\n{log_tail(self.worker_log)}")
            time.sleep(0.05)
        raise StackError(
            f"the Celery worker did not log {marker.decode()!r} within {self.start_timeout:g}s\n"
            f"{log_tail(self.worker_log)}"
        )
