"""One janitor process per engine: it tears down the engine's sandboxes when their owner dies or overruns.

The owner registers each run (and warm launcher) before making it, sets a backstop deadline when it
starts and unregisters it once torn down. How and why: docs/sandbox.md, "A sandbox dies with its worker".
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.errors import SandboxError

# What tears down a run of each kind: `function(run_id, spec)`, imported by the janitor when first needed.
CLEANERS = {
    "runsc": "sandbox.runsc:clean_up",
    "subprocess": "sandbox.subprocess_engine:clean_up",
    "docker": "sandbox.docker.engine:clean_up",
}
# A janitor that takes longer than this to accept a message is replaced (it is stuck or gone).
SEND_TIMEOUT = 5.0
_ROOT = str(Path(__file__).resolve().parent.parent)
# -I: none of the worker's PYTHON* variables, user site or working directory reach the janitor.
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from sandbox.janitor import main; main()"
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

Spec = dict[str, Any]


@dataclass
class _State:
    """What the client's finalizer and fork hook need, apart from the client itself."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    pid: int = field(default_factory=os.getpid)
    sock: socket.socket | None = None
    proc: subprocess.Popen[bytes] | None = None
    # run id -> (spec, monotonic deadline or None): replayed to a janitor that replaces a dead one.
    runs: dict[str, tuple[Spec, float | None]] = field(default_factory=dict)


class Janitor:
    """The owner's side: registers runs with this process's janitor, started on first `add`; thread-safe.

    A forked child that uses the engine gets a janitor of its own; the parent's keeps watching the parent.
    """

    def __init__(self) -> None:
        self._state = _State()
        _clients.add(self)
        weakref.finalize(self, _disconnect, self._state)

    def add(self, run_id: str, spec: Spec) -> None:
        """Register (or update) a run before any of it exists: `spec["kind"]` names its cleaner.

        Raises:
            SandboxError: no janitor process could be started.
        """
        st = self._state
        with st.lock:
            old = st.runs.get(run_id)
            st.runs[run_id] = (spec, None if old is None else old[1])
            try:
                _send(st, {"op": "add", "id": run_id, "spec": spec})
            except SandboxError:
                st.runs.pop(run_id, None)
                raise

    def deadline(self, run_id: str, seconds: float) -> None:
        """Have the janitor tear the run down `seconds` from now, should it still be registered then."""
        st = self._state
        with st.lock:
            if run_id in st.runs:
                st.runs[run_id] = (st.runs[run_id][0], time.monotonic() + seconds)
                _send(st, {"op": "deadline", "id": run_id, "in": seconds})

    def remove(self, run_id: str) -> None:
        """Unregister a run that is torn down; never starts a janitor."""
        st = self._state
        with st.lock:
            if st.runs.pop(run_id, None) is not None and st.sock is not None:
                with contextlib.suppress(SandboxError):
                    _send(st, {"op": "remove", "id": run_id})

    def close(self) -> None:
        """Let the janitor process exit if nothing is registered (a later `add` starts another)."""
        st = self._state
        with st.lock:
            if not st.runs:
                _disconnect(st)

    @property
    def pid(self) -> int | None:
        """The janitor process's pid, or None while there is none."""
        proc = self._state.proc
        return None if proc is None else proc.pid


def _send(st: _State, message: dict[str, Any]) -> None:
    """Send under `st.lock`; a janitor that is missing, dead or stuck is replaced and told every run."""
    data = (json.dumps(message) + "\n").encode()
    if st.sock is not None:
        try:
            st.sock.sendall(data, socket.MSG_NOSIGNAL)
            return
        except OSError:
            # Killed first, or the EOF of its socket would have it tear down every live run.
            if st.proc is not None:
                with contextlib.suppress(OSError):
                    st.proc.kill()
            _disconnect(st)
    _connect(st)


def _connect(st: _State) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        st.proc = subprocess.Popen(
            [sys.executable or "python3", "-I", "-c", _BOOT, _ROOT, str(os.getpid())],
            stdin=theirs.fileno(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_ENV,
            cwd="/",
            start_new_session=True,  # a terminal's Ctrl-C, or a signal to the worker's group, passes it by
            close_fds=True,
        )
    except OSError as exc:
        ours.close()
        raise SandboxError(f"cannot start the sandbox janitor: {exc}") from exc
    finally:
        theirs.close()
    ours.settimeout(SEND_TIMEOUT)
    st.sock = ours
    now = time.monotonic()
    lines: list[dict[str, Any]] = []
    for run_id, (spec, deadline) in st.runs.items():
        lines.append({"op": "add", "id": run_id, "spec": spec})
        if deadline is not None:
            lines.append({"op": "deadline", "id": run_id, "in": max(0.0, deadline - now)})
    try:
        ours.sendall("".join(json.dumps(line) + "\n" for line in lines).encode(), socket.MSG_NOSIGNAL)
    except OSError as exc:
        raise SandboxError(f"the sandbox janitor does not listen: {exc}") from exc


def _disconnect(st: _State) -> None:
    """Close our end: the janitor tears down whatever is still registered, then exits."""
    if st.pid != os.getpid():
        return
    sock, proc, st.sock, st.proc = st.sock, st.proc, None, None
    if sock is not None:
        sock.close()
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2)


_clients: weakref.WeakSet[Janitor] = weakref.WeakSet()


def _forget_the_parents_janitors() -> None:
    # In a forked child: the parent's janitors and runs are the parent's. Closing our copy of the
    # socket keeps the janitor's EOF tied to the parent; the lock may have been held at the fork.
    for client in list(_clients):
        st = client._state
        if st.sock is not None:
            with contextlib.suppress(OSError):
                os.close(st.sock.detach())
        st.lock, st.pid, st.sock, st.proc, st.runs = threading.Lock(), os.getpid(), None, None, {}


os.register_at_fork(after_in_child=_forget_the_parents_janitors)


# -- the janitor process ------------------------------------------------------------------------------


class _Watch:
    """Reads the owner's registrations on `fd` and tears runs down at their deadline or the owner's death."""

    def __init__(self, fd: int, owner: int) -> None:
        self.fd = fd
        self.runs: dict[str, Spec] = {}
        self.deadlines: dict[str, float] = {}
        self.cleaners: dict[str, Callable[[str, Spec], None]] = {}
        self.threads: list[threading.Thread] = []
        self.buffer = b""
        try:
            self.pidfd: int | None = os.pidfd_open(owner)
        except OSError:
            self.pidfd = None  # an old kernel: the socket's EOF alone tells the owner died
        # Opened after a quick death, the pidfd would be of another process with the owner's pid.
        self.owner_gone = os.getppid() != owner

    def run(self) -> None:
        try:
            self._watch()
        except _Stop:
            pass
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.set_blocking(self.fd, False)
        with contextlib.suppress(BlockingIOError):
            while self._read():
                pass
        self._tear_down(list(self.runs))
        for thread in self.threads:
            thread.join()

    def _watch(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        if self.pidfd is not None:
            poller.register(self.pidfd, select.POLLIN)
        while not self.owner_gone:
            timeout = None
            if self.deadlines:
                timeout = max(0, int((min(self.deadlines.values()) - time.monotonic()) * 1000) + 1)
            for fd, _ in poller.poll(timeout):
                if fd == self.fd:
                    self.owner_gone |= not self._read()
                else:
                    self.owner_gone = True  # a fork of the owner may hold the socket open
            now = time.monotonic()
            self._tear_down([run_id for run_id, when in self.deadlines.items() if when <= now])

    def _read(self) -> bool:
        """Handle what the owner sent; False at EOF."""
        try:
            data = os.read(self.fd, 65536)
        except ConnectionResetError:
            data = b""
        if not data:
            return False
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            try:
                self._handle(json.loads(line))
            except Exception:  # noqa: BLE001 - one bad message must not cost the other runs their teardown
                traceback.print_exc()
        return True

    def _handle(self, message: dict[str, Any]) -> None:
        run_id, op = message["id"], message["op"]
        if op == "add":
            spec = message["spec"]
            self._cleaner(spec["kind"])  # imported now, so a teardown at the owner's death starts at once
            self.runs[run_id] = spec
        elif op == "deadline" and run_id in self.runs:
            self.deadlines[run_id] = time.monotonic() + float(message["in"])
        elif op == "remove":
            self.runs.pop(run_id, None)
            self.deadlines.pop(run_id, None)

    def _cleaner(self, kind: str) -> Callable[[str, Spec], None]:
        if kind not in self.cleaners:
            module, _, name = CLEANERS[kind].partition(":")
            self.cleaners[kind] = getattr(importlib.import_module(module), name)
        return self.cleaners[kind]

    def _tear_down(self, run_ids: list[str]) -> None:
        # Each on a thread of its own: every run is killed at once, and the watch goes on meanwhile.
        for run_id in run_ids:
            spec = self.runs.pop(run_id)
            self.deadlines.pop(run_id, None)
            thread = threading.Thread(target=self._tear_down_one, args=(run_id, spec))
            thread.start()
            self.threads.append(thread)
        self.threads = [t for t in self.threads if t.is_alive()]

    def _tear_down_one(self, run_id: str, spec: Spec) -> None:
        try:
            self._cleaner(spec["kind"])(run_id, spec)
        except Exception:  # noqa: BLE001 - what is left is the next sweep's
            traceback.print_exc()


class _Stop(Exception):
    pass


def _stop(signum: int, frame: object) -> None:
    raise _Stop


def main() -> None:
    """The janitor process (`python -I -c <_BOOT> <root> <owner pid>`): its stdin is the owner's socket."""
    # Stopped with the worker's service (systemd signals every process of the unit): tear down first.
    signal.signal(signal.SIGTERM, _stop)
    with contextlib.suppress(OSError):
        # Memory pressure that kills the worker must leave the one process that cleans up after it.
        Path("/proc/self/oom_score_adj").write_text("-1000")
    _Watch(sys.stdin.fileno(), int(sys.argv[2])).run()
