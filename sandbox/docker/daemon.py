"""A private dockerd for the docker engine on machines without systemd (tests, development).

    python -m sandbox.docker.daemon start|stop|status [--dir var/docker]

Off the host's network, with runsc as a runtime: docs/sandbox.md, "A private dockerd".
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sandbox.errors import EngineUnavailable

INSTALL_HINT = (
    "dockerd is not installed: `apt-get install docker.io` (or `scripts/system-deps.sh --with-docker`); "
    "/usr/local/bin/docker alone is only a client"
)
# A unix socket path must fit in sockaddr_un (108 bytes); longer run dirs move to /run.
MAX_SOCKET_PATH = 100
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "var" / "docker"


class PrivateDockerd:
    def __init__(self, base: Path, *, runsc_path: str = "runsc", dockerd_path: str = "dockerd") -> None:
        self.base = base.resolve()
        self.runsc_path = runsc_path
        self.dockerd_path = dockerd_path
        run_dir = self.base / "run"
        if len(str(run_dir / "containerd" / "containerd.sock")) > MAX_SOCKET_PATH:
            run_dir = Path("/run") / f"crucible-docker-{hashlib.sha256(str(self.base).encode()).hexdigest()[:12]}"
        self.run_dir = run_dir
        self._proc: subprocess.Popen[bytes] | None = None  # the dockerd this object started

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "dockerd.pid"

    @property
    def log_path(self) -> Path:
        return self.base / "dockerd.log"

    def daemon_config(self) -> dict[str, object]:
        runsc = shutil.which(self.runsc_path)
        if runsc is None:
            raise EngineUnavailable(f"runsc not found ({self.runsc_path}): dockerd needs it as its 'runsc' runtime")
        return {
            "iptables": False,
            "ip-forward": False,
            "ip-masq": False,
            "bridge": "none",
            "data-root": str(self.base / "data"),
            "exec-root": str(self.run_dir / "exec"),
            "pidfile": str(self.pidfile),
            "hosts": [self.url],
            "runtimes": {"runsc": {"path": runsc, "runtimeArgs": ["--network=none"]}},
            # Output is read live through attach; a json log of every run would only fill the disk.
            "log-driver": "none",
        }

    def answers(self, timeout: float = 1.0) -> bool:
        """True if something answers GET /_ping on our socket (no docker SDK needed)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(str(self.socket_path))
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.")
        except OSError:
            return False

    @contextlib.contextmanager
    def shared(self) -> Iterator[PrivateDockerd]:
        """Use the daemon, starting it if it does not answer; at the end, stop it if a user of
        shared() started it and no other user (another test session, say) still holds it."""
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.base / "users.lock", "a") as users:
            fcntl.flock(users, fcntl.LOCK_SH)
            if self.start():
                (self.base / "started-by-shared").touch()
            try:
                yield self
            finally:
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass  # still in use: the last user stops it
                else:
                    if (self.base / "started-by-shared").exists():
                        self.stop()
                        (self.base / "started-by-shared").unlink(missing_ok=True)

    def start(self, timeout: float = 60.0) -> bool:
        """Start dockerd unless it already answers; True if this call started it."""
        if self.answers():
            return False
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.base / "start.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two callers at once start one daemon
            if self.answers():
                return False
            return self._start(timeout)

    def _start(self, timeout: float) -> bool:
        dockerd = shutil.which(self.dockerd_path)
        if dockerd is None:
            raise EngineUnavailable(INSTALL_HINT)
        if os.geteuid() != 0:
            raise EngineUnavailable("starting dockerd needs root")
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._stop_stale()
        config_path = self.base / "daemon.json"
        config_path.write_text(json.dumps(self.daemon_config(), indent=2) + "\n")
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                [dockerd, "--config-file", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
                env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
            )
        deadline = time.monotonic() + timeout
        while not self.answers():
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                raise EngineUnavailable(f"dockerd did not start (exit {proc.returncode}): {self._log_tail()}")
            time.sleep(0.1)
        self._proc = proc
        return True

    def stop(self, timeout: float = 30.0) -> None:
        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._proc is not None and self._proc.pid == pid:
            self._proc.wait(timeout=5)  # ours: reap it rather than leave a zombie
            self._proc = None
        # dockerd removes its pidfile and socket on a clean exit; a killed one does not.
        for path in (self.pidfile, self.socket_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) and _is_dockerd(pid) else None

    def _stop_stale(self) -> None:
        """A dockerd of ours that is alive but does not answer (hung) is stopped before a restart."""
        if self._pid() is not None:
            self.stop()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _is_dockerd(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.docker.daemon", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    daemon = PrivateDockerd(args.dir)
    try:
        if args.command == "start":
            started = daemon.start()
            print(f"{'started' if started else 'already running'}: DOCKER_HOST={daemon.url}")
        elif args.command == "stop":
            daemon.stop()
        else:
            print(f"{'answering' if daemon.answers() else 'not answering'}: DOCKER_HOST={daemon.url}")
            return 0 if daemon.answers() else 1
    except EngineUnavailable as exc:
        print(f"sandbox.docker.daemon: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
