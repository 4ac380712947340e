"""Launchers for `runsc run`: a `sh` that joins the run's cgroup first, then becomes runsc.

The runsc engine keeps them warm, made ahead of time, so joining a cgroup is off the critical path;
how they are made, used and ended is in docs/sandbox.md, "Warm launchers".
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sandbox import cgroups, workdirs
from sandbox.janitor import Janitor

# Names this engine's work dirs and cgroups; no engine's prefix starts another's, so no sweep takes another's.
RUN_PREFIX = "crucible-runsc-"
MAX_WARM = 4
# $1.. are runsc and its global flags; the line read names the run's work dir (its basename is
# the container id). `read` in a sh reads byte by byte, so nothing past the line is consumed.
# Exit status 125: the launcher could not join its cgroup, or was never given a run.
_SCRIPT = (
    'for f in $CRUCIBLE_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; '
    "IFS= read -r dir || exit 125; "
    # A pooled sandbox has no stdin file: its runsc keeps this pipe, which then carries its job.
    'if [ -e "$dir/stdin" ]; then exec <"$dir/stdin"; fi; '
    'exec "$@" --root "$dir/state" run --bundle "$dir" --pid-file "$dir/runsc.pid" "${dir##*/}"'
)
# Nothing of the worker's environment reaches runsc (or the sandbox through it).
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


class Launcher:
    """One `sh` in the cgroup of the run it will start, with that run's work dir (docs/sandbox.md).

    The work dir exists (and its lock is held) from the start, so a sweep by another worker takes
    the launcher's cgroup for a live run's even before the `sh` has joined it. With a `janitor`, the
    launcher is registered with it before anything of it exists, and unregistered by `discard()`.
    """

    def __init__(
        self, state_dir: Path, cgroup_parent: str, runsc_flags: Sequence[str], janitor: Janitor | None = None
    ) -> None:
        self.run_id = RUN_PREFIX + secrets.token_hex(8)
        self.cgroup = cgroups.RunCgroup(cgroup_parent, self.run_id)
        self.janitor = janitor
        if janitor is not None:
            workdir = str(state_dir / self.run_id)
            spec = {"kind": "runsc", "workdir": workdir, "cgroup_parent": cgroup_parent, "runsc": list(runsc_flags)}
            janitor.add(self.run_id, spec)
        try:
            self.workdir, self.lock = workdirs.create(state_dir, self.run_id)
        except BaseException:
            self._unregister()
            raise
        self._owner = os.getpid()
        try:
            self.cgroup.create()
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", _SCRIPT, "sh", *runsc_flags],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**_ENV, "CRUCIBLE_CGROUP_PROCS": " ".join(self.cgroup.procs_files)},
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            self.cgroup.remove(timeout=0)
            self._remove_workdir()
            self._unregister()
            raise

    def usable(self) -> bool:
        """Still waiting for its run, and made by this process (not inherited across a fork)."""
        return self._owner == os.getpid() and self.proc.poll() is None

    def go(self, *, keep_stdin: bool = False) -> None:
        """Start `runsc run` on the bundle in the work dir; raises OSError if the launcher died.

        keep_stdin: runsc's stdin stays this pipe (a pooled sandbox's), not the work dir's stdin file.
        """
        if "\n" in str(self.workdir):
            raise ValueError(f"a work dir path with a newline cannot be sent to the launcher: {self.workdir!r}")
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f"{self.workdir}\n".encode())
            self.proc.stdin.flush()
        finally:
            if not keep_stdin:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()

    def let_go(self) -> None:
        """Start ending it without waiting: closing its pipes ends the `read`, and the sh with it."""
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()

    def discard(self) -> None:
        """End a launcher that was never told to go (or died); remove its cgroup and work dir."""
        self.let_go()
        if self._owner != os.getpid():
            return  # the parent's, inherited through a fork: closing our copies is all that is ours
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.cgroup.kill_all()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=2)
        self.cgroup.remove()
        self._remove_workdir()
        self._unregister()

    def _remove_workdir(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.lock.close()

    def _unregister(self) -> None:
        if self.janitor is not None:
            self.janitor.remove(self.run_id)


class LauncherPool:
    """Warm launchers for one engine's next runs (as many as it has had runs at once); thread-safe."""

    def __init__(
        self,
        make: Callable[[], Launcher],
        *,
        warm: bool = True,
        limit: int = MAX_WARM,
        room: Callable[[], bool] | None = None,
    ) -> None:
        self._make = make
        self._warm_enabled = warm
        self._limit = limit
        self._room = room  # False: making one more now would go over a cap (pooled sandboxes' memory)
        self._state = _PoolState()
        self._running = 0
        self._wanted = 0
        # Launchers still warm when the engine is dropped or the process exits are ended too.
        self._finalizer = weakref.finalize(self, _shut_down, self._state)

    def take(self) -> Launcher:
        """A warm launcher if one is ready, else a new one; call `done()` when its run ended."""
        taken = self.take_warm()
        return taken if taken is not None else self._make()

    def take_warm(self) -> Launcher | None:
        """A warm launcher if one is ready, else None; call `done()` when the run ended either way."""
        st = self._state
        dead: list[Launcher] = []
        taken: Launcher | None = None
        with st.lock:
            self._running += 1
            self._wanted = min(self._limit, max(self._wanted, self._running))
            while st.warm and taken is None:
                candidate = st.warm.pop()
                if candidate.usable():
                    taken = candidate
                else:
                    dead.append(candidate)
        for launcher in dead:
            launcher.discard()
        self._fill_soon()
        return taken

    def prefill(self, count: int = 1) -> None:
        """Make `count` launchers ready in the background before any run asks for one."""
        with self._state.lock:
            self._wanted = min(self._limit, max(self._wanted, count))
        self._fill_soon()

    def done(self) -> None:
        with self._state.lock:
            self._running -= 1

    def warm_ids(self) -> list[str]:
        """Run ids (and cgroup names) of the launchers now waiting for a run."""
        with self._state.lock:
            return [launcher.run_id for launcher in self._state.warm]

    def close(self) -> None:
        """End every warm launcher (and one being made); later takes start launchers cold."""
        _shut_down(self._state)

    def _fill_soon(self) -> None:
        st = self._state
        with st.lock:
            if not self._warm_enabled or st.closed or st.filler is not None or len(st.warm) >= self._wanted:
                return
            st.filler = threading.Thread(target=self._fill, name="crucible-launchers", daemon=True)
            st.filler.start()

    def _fill(self) -> None:
        # `filler` is cleared under the same lock hold that decides to stop: a take() in between
        # would otherwise see a fill still running, start none, and leave the pool short.
        st = self._state
        while True:
            with st.lock:
                if st.closed or len(st.warm) >= self._wanted:
                    st.filler = None
                    return
            if self._room is not None and not self._room():
                with st.lock:
                    st.filler = None
                return
            try:
                launcher = self._make()
            except Exception:  # noqa: BLE001 - a cold start in take() reports the cause
                with st.lock:
                    st.filler = None
                return
            with st.lock:
                if not st.closed:
                    st.warm.append(launcher)
                    continue
                st.filler = None
            launcher.discard()
            return


@dataclass
class _PoolState:
    """What the pool's finalizer needs, apart from the pool (a finalizer must not hold its object)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    warm: list[Launcher] = field(default_factory=list)
    closed: bool = False
    filler: threading.Thread | None = None


def _shut_down(st: _PoolState) -> None:
    with st.lock:
        st.closed = True
        warm, st.warm[:] = list(st.warm), []
        filler = st.filler
    # A launcher being made right now is discarded by the filler itself once it sees `closed`;
    # wait for that, or at interpreter exit the daemon thread would stop half-way and leave it.
    if filler is not None and filler is not threading.current_thread():
        filler.join(timeout=5)
    _discard_all(warm)


def _discard_all(launchers: list[Launcher]) -> None:
    for launcher in launchers:  # all end at once, then each is waited for
        with contextlib.suppress(Exception):
            launcher.let_go()
    for launcher in list(launchers):
        with contextlib.suppress(Exception):
            launcher.discard()
    launchers.clear()
