"""Sampled process counts of a run, and what they can (and cannot) say about the process limit.

No engine sees a refused fork directly: under gVisor the only host-visible evidence is the guest's
task count, under rlimits the run's count in /proc. Reaching the limit is necessary for a refused
fork but not sufficient, and samples can miss a brief peak, so the verdict is `pids_limit` only
when the count reached the limit (a count of 1 is just the program itself) AND the run failed:
it exited non-zero, or it was still at the limit when the wall-time limit ended it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

from sandbox.pump import METRICS_EVERY


class ProcessSamples:
    """Task counts (processes plus threads, what RLIMIT_NPROC counts) over monotonic time."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.samples: list[tuple[float, int]] = []

    def add(self, when: float, count: int) -> None:
        self.samples.append((when, count))

    @property
    def latest(self) -> int | None:
        return self.samples[-1][1] if self.samples else None

    @property
    def peak(self) -> int | None:
        return max((n for _, n in self.samples), default=None)

    @property
    def near_limit(self) -> bool:
        """Worth sampling more often: a fork bomb may reach the limit and die out between samples."""
        latest = self.latest or 0
        return latest >= 2 and 2 * latest >= self.limit

    @property
    def limit_reached(self) -> bool:
        peak = self.peak
        return peak is not None and peak >= max(2, self.limit)

    def held_until(self, when: float) -> bool:
        """The limit was reached, and the last sample taken before `when` was still at it."""
        before = [n for t, n in self.samples if t < when]
        return self.limit_reached and bool(before) and before[-1] >= self.limit

    def detail(self) -> str:
        return f"process limit of {self.limit} reached (further processes and threads are refused)"


# The guest's process count is first read as soon as the sandbox exists, so even a print(1) gets a
# value, then every METRICS_EVERY, or PROCESS_SAMPLE_FAST near the limit.
FIRST_PROCESS_SAMPLE = 0.0
PROCESS_SAMPLE_FAST = 0.1
FIRST_SAMPLE_RETRY = 0.02
PROCESS_SAMPLE_TIMEOUT = 2.0
# A stats reply is well under 4 KiB; anything much larger is not one.
MAX_REPLY_BYTES = 1024 * 1024
# What `runsc events --stats` calls in the sandbox (gvisor runsc/boot/controller.go).
EVENT_METHOD = "containerManager.Event"


def control_socket(root: Path, sandbox_id: str) -> Path:
    """Where runsc's sandbox (the sentry) listens for control calls, in the state dir `--root`."""
    return root / f"runsc-{sandbox_id}.sock"


class _SocketQuery:
    """One `containerManager.Event` call on the sandbox's control socket: the call `runsc events
    --stats` makes, without starting a runsc process (~0.3 ms instead of ~25 ms wall and ~17 ms
    CPU, measured with runsc 20240729). The reply is read by later polls: the pump never waits."""

    def __init__(self, path: Path, container_id: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self.reply = b""
        self.parsed: object = None  # the reply, once it is one whole JSON value
        try:
            _connect(self.sock, path)
            # urpc (gvisor/pkg/urpc): one JSON object each way over the stream.
            self.sock.sendall(json.dumps({"method": EVENT_METHOD, "arg": container_id}).encode())
        except OSError:
            self.sock.close()
            raise

    def done(self) -> bool:
        try:
            while chunk := self.sock.recv(65536):
                self.reply += chunk
                try:
                    self.parsed = json.loads(self.reply)
                    return True
                except ValueError:
                    if len(self.reply) > MAX_REPLY_BYTES:
                        return True
            return True  # closed by the sandbox: it has gone
        except BlockingIOError:
            return False
        except OSError:
            return True

    def count(self) -> int | None:
        self.close()
        reply = self.parsed
        if not isinstance(reply, dict) or reply.get("success") is not True:
            return None
        return _pids_current((reply.get("result") or {}).get("event"))

    def understood(self) -> bool:
        """The sandbox answered as this protocol expects: a count, or why there is none yet."""
        reply = self.parsed
        if not isinstance(reply, dict) or not isinstance(reply.get("success"), bool):
            return False
        if reply["success"]:
            return _has_pids((reply.get("result") or {}).get("event"))
        return reply.get("err") != "unknown method"

    def misunderstood(self) -> bool:
        """The sandbox answered, but not as this protocol expects (another runsc version). Not
        "container not started yet" or "gone", which only mean: ask again later."""
        return bool(self.reply) and not self.understood()

    def close(self) -> None:
        self.sock.close()


# sockaddr_un holds 108 bytes; docker's runsc state dirs make longer paths.
_UNIX_PATH_MAX = 107


def _connect(sock: socket.socket, path: Path) -> None:
    if len(os.fsencode(path)) <= _UNIX_PATH_MAX:
        sock.connect(str(path))
        return
    # A long path is reached through its directory's descriptor, as runsc itself does.
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock.connect(f"/proc/self/fd/{directory}/{path.name}")
    finally:
        os.close(directory)


class _CommandQuery:
    """The same question through `runsc events --stats`, for a runsc whose control socket is not
    where _SocketQuery looks (its protocol is internal to gVisor and may move)."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            close_fds=True,
        )

    def done(self) -> bool:
        return self.proc.poll() is not None

    def count(self) -> int | None:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self.proc.stdout.close()
        if self.proc.wait() != 0:
            return None  # not created yet, or already gone
        try:
            return _pids_current(json.loads(out))
        except ValueError:
            return None

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _pids_current(event: object) -> int | None:
    try:
        count = event["data"]["pids"]["current"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def _has_pids(event: object) -> bool:
    # runsc leaves out a zero "current" (omitempty): `"pids": {}` is a container with no task yet
    # (created, not started) or no more, an answer in this protocol that holds no count.
    try:
        return isinstance(event["data"]["pids"], dict)  # type: ignore[index]
    except (KeyError, TypeError):
        return False


class GuestProcesses:
    """The guest's task count (processes and threads), sampled from the sandbox itself.

    Under gVisor the host cgroup's pids.current counts the sentry's threads, not the user's
    processes; the sandbox's own pids counter is what RLIMIT_NPROC limits. It is asked on the
    control socket when there is one (`socket_path`), else with `command` (`runsc events --stats`);
    either way the query runs alongside the output pump, which later polls collect.
    """

    def __init__(
        self, command: list[str], limit: int, *, socket_path: Path | None = None, container_id: str = ""
    ) -> None:
        self.command = command
        self.socket_path, self.container_id = socket_path, container_id
        self.counts = ProcessSamples(limit)
        self.socket_answered = False  # the socket has answered in its protocol during this run
        self.query: _SocketQuery | _CommandQuery | None = None
        self.launched_at = 0.0
        self.next_at: float | None = None

    def booted(self, now: float) -> None:
        self.next_at = now + FIRST_PROCESS_SAMPLE

    def poll(self, now: float, *, launch: bool) -> None:
        if self.query is not None:
            if not self.query.done():
                if now - self.launched_at > PROCESS_SAMPLE_TIMEOUT:
                    self._abandon()
                return
            self._collect()
        if launch and self.next_at is not None and now >= self.next_at:
            self.launched_at = now
            self.query = self._start()
            self.next_at = now + (PROCESS_SAMPLE_FAST if self.counts.near_limit else METRICS_EVERY)

    def finish(self) -> None:
        """Collect a query still in flight (the sandbox has exited: it answers or fails at once)."""
        if self.query is None:
            return
        deadline = time.monotonic() + PROCESS_SAMPLE_TIMEOUT
        while not self.query.done():
            if time.monotonic() > deadline:
                self._abandon()
                return
            time.sleep(0.005)
        self._collect()

    def _start(self) -> _SocketQuery | _CommandQuery | None:
        if self.socket_path is not None:
            try:
                return _SocketQuery(self.socket_path, self.container_id)
            except OSError:
                # runsc binds the socket before it writes the pid file, so once the socket has
                # answered, a missing or refusing one is a sandbox going away, which `runsc
                # events` would find gone too. Before that, it is out of reach: runsc knows better.
                if self.socket_answered:
                    return None
        return _CommandQuery(self.command)

    def _collect(self) -> None:
        assert self.query is not None
        count = self.query.count()
        cheap = isinstance(self.query, _SocketQuery)
        if isinstance(self.query, _SocketQuery):
            if self.query.understood():
                self.socket_answered = True
            elif self.query.misunderstood() and not self.socket_answered:
                self.socket_path = None  # another runsc: ask `runsc events` for the rest of this run
            # else: closed without a word, or mid-reply after answering before: it has gone
        self.query = None
        if count is not None:
            self.counts.add(self.launched_at, count)
        elif cheap and not self.counts.samples and self.next_at is not None:
            # Not started yet (the pid file comes before the start) or busy: a short run must still
            # get a first count, so ask again soon rather than a whole metrics period later. Only
            # on the socket: a failing `runsc events` every 20 ms would cost a core.
            self.next_at = min(self.next_at, self.launched_at + FIRST_SAMPLE_RETRY)

    def _abandon(self) -> None:
        assert self.query is not None
        self.query.close()
        self.query = None
