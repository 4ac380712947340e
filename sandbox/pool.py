"""Pooled sandboxes: booted before their run, each used for exactly one run, then destroyed.

A pooled sandbox is a warm launcher (sandbox/launcher.py) sent at once onto a bundle whose /code is
still empty and whose PID 1 is sandbox/guest/crucible-init, waiting for one job on its stdin. A run
writes its files into /code, sets its cgroup limits and sends the job; its wall clock starts then.
docs/sandbox.md, "Pooled sandboxes", says what a run can and cannot tell.
"""

from __future__ import annotations

import json
import os
import select
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox import workdirs
from sandbox.contract import LIMIT_SPECS, ExecRequest, Limits, MiB
from sandbox.errors import EngineUnavailable
from sandbox.guest_env import GUEST_MOUNT, guest_environment
from sandbox.gvisor import CODE_MOUNT, SANDBOX_UID, python_command
from sandbox.janitor import Janitor
from sandbox.launcher import Launcher

READY = b"crucible-init: ready\n"  # what sandbox/guest/crucible-init prints once it waits for its job
# Booted in the fixed part of every program's environment, the init runs the program in its own
# interpreter, as `python3 -u main.py` would (crucible-init; docs/sandbox.md).
INIT_COMMAND = ["/usr/bin/python3", "-u", f"{GUEST_MOUNT}/crucible-init"]
# The same, having imported common modules before its run.
PRELOAD_INIT_COMMAND = [*INIT_COMMAND, "--preload"]
# Python reads these as it starts, so a run that sets one gets an interpreter of its own.
STARTUP_VARIABLE_PREFIXES = ("PYTHON", "LC_")
STARTUP_VARIABLES = frozenset({"LANG", "LANGUAGE", "TZ", "HOME", "TMPDIR", "PATH"})
# The preloaded modules hold ~25 MiB of the run's memory: below this limit a program gets a fresh
# interpreter, so a small limit leaves it the room it had.
PRELOAD_MIN_MEMORY_BYTES = 128 * MiB
# A sandbox not ready this long after its launch is broken: it is discarded, never given to a run.
READY_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class PoolKey:
    """What a sandbox is booted with and a run cannot change afterwards: its image, /tmp's size,
    and whether its init has preloaded the common modules to run the program in (crucible-init)."""

    image: str
    tmp_bytes: int
    preload: bool = False

    @classmethod
    def of(cls, request: ExecRequest, *, preloading: bool = False) -> PoolKey:
        return cls(request.image, request.limits.tmp_bytes, preloading and preloadable(request))


def rlimits(limits: Limits) -> list[tuple[str, int]]:
    """The program's rlimits (RLIMIT_NPROC: gVisor counts the sandbox's tasks; docs/sandbox.md)."""
    return [
        ("RLIMIT_NPROC", limits.processes),
        ("RLIMIT_FSIZE", limits.file_size_bytes),
        ("RLIMIT_NOFILE", limits.open_files),
        ("RLIMIT_CORE", 0),
    ]


# The pooled sandbox boots with the highest limits a run may have; its init lowers them to the run's.
CEILING_RLIMITS = rlimits(
    Limits(
        processes=int(LIMIT_SPECS["processes"].maximum),
        file_size_bytes=int(LIMIT_SPECS["file_size_bytes"].maximum),
        open_files=int(LIMIT_SPECS["open_files"].maximum),
        memory_bytes=int(LIMIT_SPECS["memory_bytes"].maximum),
        tmp_bytes=int(LIMIT_SPECS["tmp_bytes"].minimum),
    )
)


def preloadable(request: ExecRequest) -> bool:
    """Whether this request's program runs in a preloaded interpreter, given one (docs/sandbox.md)."""
    return request.preload and request.limits.memory_bytes >= PRELOAD_MIN_MEMORY_BYTES and in_process(request)


def in_process(request: ExecRequest) -> bool:
    """Whether the init's interpreter can be the program's: not when it sets what Python reads as it starts."""
    return not any(k.startswith(STARTUP_VARIABLE_PREFIXES) or k in STARTUP_VARIABLES for k in request.env)


def job_for(request: ExecRequest) -> bytes:
    """The job crucible-init reads: a 4-byte big-endian length, then NUL-separated fields, so that it
    imports no parser (json alone took ~20 ms under gVisor): in_process, cwd, the count of rlimits
    and their name/value pairs, the count of argv and argv, then NAME=value for the environment.
    The contract keeps NUL out of argv and the environment."""
    argv = python_command(request)
    env = guest_environment(request, home="/tmp", guest_dir=GUEST_MOUNT)
    limits = rlimits(request.limits)
    fields = ["1" if in_process(request) else "0", CODE_MOUNT, str(len(limits))]
    fields += [str(item) for pair in limits for item in pair]
    fields += [str(len(argv)), *argv, *(f"{name}={value}" for name, value in env.items())]
    job = "\0".join(fields).encode("utf-8", "surrogatepass")
    return len(job).to_bytes(4, "big") + job


class PooledSandbox(Launcher):
    """A booted sandbox waiting for its one job; `max_age` seconds after it was ready it is unusable."""

    def __init__(
        self,
        state_dir: Path,
        cgroup_parent: str,
        runsc_flags: list[str],
        janitor: Janitor | None,
        *,
        key: PoolKey,
        spec: Any,
        max_age: float,
    ) -> None:
        super().__init__(state_dir, cgroup_parent, runsc_flags, janitor)
        self.key, self.max_age = key, max_age
        launched = time.monotonic()
        try:
            # Owner only until a run's files are in it: write_code() then lets the program's group read.
            code = self.workdir / "code"
            code.mkdir(mode=0o700)
            os.chown(code, -1, SANDBOX_UID)
            (self.workdir / "state").mkdir(mode=0o700)
            workdirs.write_private(self.workdir / "config.json", json.dumps(spec(code)).encode())
            self.go(keep_stdin=True)
            self._await_ready()
            self.cgroup.hold_cpu()
        except BaseException:
            self.discard()
            raise
        self.ready_at = time.monotonic()
        self.boot_seconds = self.ready_at - launched

    def usable(self) -> bool:
        return super().usable() and time.monotonic() - self.ready_at < self.max_age

    def let_go(self) -> None:
        # A sandbox let go has no run to finish, and on its trickle of CPU the init took seconds to
        # see the end of its stdin and exit (a worker's stop waited ~2 s per sandbox): kill it.
        super().let_go()
        if self._owner == os.getpid() and self.proc.poll() is None:
            self.cgroup.kill_all()

    def start(self, request: ExecRequest) -> None:
        """Send the job and then the run's stdin (from a thread: the program may never read it)."""
        stdin = self.proc.stdin
        assert stdin is not None
        data = job_for(request) + request.stdin

        def feed() -> None:
            try:
                stdin.write(data)
                stdin.flush()
            except OSError:
                pass  # the program ended (or closed stdin) before reading it all
            finally:
                try:
                    stdin.close()
                except OSError:
                    pass

        threading.Thread(target=feed, name=f"{self.run_id}-stdin", daemon=True).start()

    def _await_ready(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        got = b""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while len(got) < len(READY):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise EngineUnavailable(f"a pooled sandbox was not ready after {READY_TIMEOUT_SECONDS:g} s")
            chunk = os.read(fd, len(READY) - len(got))  # never past the ready line: the run's output follows
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace")[-500:] if self.proc.stderr else ""
                raise EngineUnavailable(f"a pooled sandbox ended while booting: {err}")
            got += chunk
        if got != READY:
            raise EngineUnavailable(f"a pooled sandbox said {got!r} instead of being ready")
