"""Runs' work dirs under an engine's state dir: each made with its lock held for the life of its run,
given the request's code, and swept by any worker once that lock is free (its worker died)."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from sandbox.contract import ExecRequest

# A work dir is made under this name, locked, then renamed: a sweep never sees one unlocked.
CREATING_PREFIX = ".creating-"
# Only a creator that died between mkdir and rename leaves one; this old, it is no creation in progress.
STALE_CREATING_SECONDS = 60.0


def create(state_dir: Path, name: str) -> tuple[Path, TextIO]:
    """Make `<state_dir>/<name>` (private to us) and lock it.

    Returns:
        The work dir and its lock file, locked until closed: close it once the run is torn down.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    workdir = state_dir / name
    if workdir.exists():
        raise FileExistsError(f"work dir {workdir} exists already")
    creating = Path(tempfile.mkdtemp(prefix=CREATING_PREFIX, dir=state_dir))  # mode 0o700
    try:
        lock = open(creating / "lock", "w")  # held for the life of the run
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            creating.rename(workdir)
        except BaseException:
            lock.close()
            raise
    except BaseException:
        shutil.rmtree(creating, ignore_errors=True)
        raise
    return workdir, lock


def write_code(workdir: Path, request: ExecRequest, *, reader: int | None = None) -> Path:
    """Write the request's files into `<workdir>/code`, private to the worker (0700 dirs, 0600 files).

    reader: the uid (and gid) that runs the code: the files' group becomes its gid and the group may
    read them (0750, 0640), so the program reads its code but cannot change it; None: owner only.
    """
    dir_mode, file_mode = (0o700, 0o600) if reader is None else (0o750, 0o640)
    code = workdir / "code"
    made = [code]
    for name in request.files:
        path = code / name
        made.extend(code / parent for parent in reversed(path.relative_to(code).parents[:-1]))
    for path in dict.fromkeys(made):
        if not path.is_dir():  # (a pooled sandbox's code dir exists, empty, from its boot)
            path.mkdir(mode=0o700)
    for name, data in request.files.items():
        write_private(code / name, data)
        made.append(code / name)
    for path in dict.fromkeys(made):
        if reader is not None:
            os.chown(path, -1, reader)
        path.chmod(dir_mode if path.is_dir() else file_mode)  # after chown: it may clear mode bits
    return code


def write_private(path: Path, data: bytes) -> None:
    """Write `path` as a new file readable by its owner only, whatever the process's umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def sweep(state_dir: Path, prefix: str, remove: Callable[[Path], None]) -> set[str]:
    """Call `remove(workdir)` on every work dir named `<prefix>...` whose lock is free, holding it meanwhile.

    Returns:
        The names of the work dirs spared because a live run holds their lock (or it cannot be opened).
    """
    spared: set[str] = set()
    if not state_dir.is_dir():
        return spared
    for workdir in state_dir.iterdir():
        if workdir.name.startswith(CREATING_PREFIX):
            _sweep_stale_creation(workdir)
            continue
        if not workdir.name.startswith(prefix):
            continue
        try:
            # Never created here: a lock file a sweep made could outlive an owner's rmtree.
            fd = os.open(workdir / "lock", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            # Made locked, so its lock went in a teardown that is done with all but the files.
            if workdir.is_dir():
                remove(workdir)
            continue
        except OSError:
            spared.add(workdir.name)  # gone meanwhile, or not ours to judge: a later sweep sees it
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                spared.add(workdir.name)
                continue
            remove(workdir)
        finally:
            os.close(fd)
    return spared


def _sweep_stale_creation(path: Path) -> None:
    try:
        if time.time() - path.stat().st_mtime < STALE_CREATING_SECONDS:
            return
        fd = os.open(path / "lock", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        shutil.rmtree(path, ignore_errors=True)  # its creator died before making the lock
        return
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        shutil.rmtree(path, ignore_errors=True)
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
