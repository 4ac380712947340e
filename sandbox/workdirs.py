"""Runs' work dirs under an engine's state dir: each made with its lock held for the life of its run,
given the request's code, and swept by a later worker once that lock is free (its worker died)."""

from __future__ import annotations

import fcntl
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from sandbox.contract import ExecRequest


def create(state_dir: Path, name: str) -> tuple[Path, TextIO]:
    """Make `<state_dir>/<name>` (private to us) and lock it.

    Returns:
        The work dir and its lock file, locked until closed: close it once the run is torn down.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    workdir = state_dir / name
    workdir.mkdir(mode=0o700)
    lock = open(workdir / "lock", "w")  # held for the life of the run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
    except BaseException:
        lock.close()
        raise
    return workdir, lock


def write_code(workdir: Path, request: ExecRequest) -> Path:
    """Write the request's files into `<workdir>/code` (readable by anyone, writable by us only)."""
    code = workdir / "code"
    code.mkdir(mode=0o755)
    for name, data in request.files.items():
        path = code / name
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        path.write_bytes(data)
        path.chmod(0o644)
    return code


def sweep(state_dir: Path, prefix: str, remove: Callable[[Path], None]) -> set[str]:
    """Call `remove(workdir)` on every work dir named `<prefix>...` whose lock is free, holding it meanwhile.

    Returns:
        The names of the work dirs spared because a live run holds their lock (or it cannot be opened).
    """
    spared: set[str] = set()
    if not state_dir.is_dir():
        return spared
    for workdir in state_dir.iterdir():
        if not workdir.name.startswith(prefix):
            continue
        try:
            lock = open(workdir / "lock", "a")
        except OSError:
            spared.add(workdir.name)  # gone meanwhile, or not ours to judge: a later sweep sees it
            continue
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                spared.add(workdir.name)
                continue
            remove(workdir)
    return spared
