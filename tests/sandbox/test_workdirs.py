"""Unit tests of sandbox.workdirs: a run's work dir, its lock, its code, and the sweep."""

from __future__ import annotations

import fcntl
import os
import stat
import time
from pathlib import Path

import pytest

from sandbox import workdirs
from sandbox.contract import ExecRequest


def test_a_new_work_dir_is_private_and_locked_until_its_lock_is_closed(tmp_path: Path) -> None:
    workdir, lock = workdirs.create(tmp_path / "state", "crucible-test-1")
    assert workdir == tmp_path / "state" / "crucible-test-1"
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
    with open(workdir / "lock", "a") as other:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.close()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once the run closes it


def test_the_code_is_written_below_code_readable_by_its_owner_only(tmp_path: Path) -> None:
    request = ExecRequest(files={"main.py": b"print(1)", "pkg/sub/mod.py": b"X = 1"})
    old_umask = os.umask(0)  # modes come from the code, not from the process's umask
    try:
        code = workdirs.write_code(tmp_path, request)
    finally:
        os.umask(old_umask)
    assert code == tmp_path / "code"
    assert (code / "pkg" / "sub" / "mod.py").read_bytes() == b"X = 1"
    for path in (code / "main.py", code / "pkg" / "sub" / "mod.py"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for path in (code, code / "pkg", code / "pkg" / "sub"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_the_uid_that_runs_the_code_may_read_it_but_not_change_it(tmp_path: Path) -> None:
    code = workdirs.write_code(tmp_path, ExecRequest(files={"main.py": b"", "pkg/mod.py": b""}), reader=65534)
    paths = [code, *code.rglob("*")]
    assert {(p.stat().st_uid, p.stat().st_gid) for p in paths} == {(os.geteuid(), 65534)}
    assert {stat.S_IMODE(p.stat().st_mode) for p in paths if p.is_dir()} == {0o750}
    assert {stat.S_IMODE(p.stat().st_mode) for p in paths if p.is_file()} == {0o640}


def test_the_sweep_removes_unlocked_work_dirs_of_its_prefix_only(tmp_path: Path) -> None:
    dead = tmp_path / "mine-dead"
    dead.mkdir()
    (dead / "lock").write_text("")
    live, lock = workdirs.create(tmp_path, "mine-live")
    other = tmp_path / "other-dead"
    other.mkdir()
    (other / "lock").write_text("")
    removed: list[str] = []
    try:
        spared = workdirs.sweep(tmp_path, "mine-", lambda workdir: removed.append(workdir.name))
    finally:
        lock.close()
    assert removed == ["mine-dead"]
    assert spared == {"mine-live"}


def test_the_sweep_of_a_missing_state_dir_does_nothing(tmp_path: Path) -> None:
    assert workdirs.sweep(tmp_path / "nowhere", "mine-", lambda workdir: None) == set()


def test_a_work_dir_gets_its_name_only_once_it_is_locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A sweep takes an unlocked work dir for a dead run's: one being made must never look like that.
    names_at_lock: list[list[str]] = []
    real_flock = fcntl.flock

    def flock(f: object, op: int) -> None:
        names_at_lock.append(sorted(p.name for p in tmp_path.iterdir()))
        real_flock(f, op)  # type: ignore[arg-type]

    monkeypatch.setattr(workdirs.fcntl, "flock", flock)
    workdir, lock = workdirs.create(tmp_path, "mine-new")
    lock.close()
    assert len(names_at_lock) == 1 and "mine-new" not in names_at_lock[0], names_at_lock
    assert [p.name for p in tmp_path.iterdir()] == ["mine-new"]
    assert (workdir / "lock").is_file()


def test_the_sweep_removes_a_work_dir_without_a_lock_file_and_makes_none(tmp_path: Path) -> None:
    # Only a teardown (its owner's, or one cut short by its death) leaves a work dir without its lock.
    (tmp_path / "mine-torn").mkdir()
    removed: list[str] = []
    workdirs.sweep(tmp_path, "mine-", lambda workdir: removed.append(workdir.name))
    assert removed == ["mine-torn"]
    assert list((tmp_path / "mine-torn").iterdir()) == []


def test_the_sweep_removes_a_half_made_work_dir_only_once_it_is_stale_and_unlocked(tmp_path: Path) -> None:
    def half_made(name: str, age: float) -> Path:
        path = tmp_path / f"{workdirs.CREATING_PREFIX}{name}"
        path.mkdir()
        (path / "lock").write_text("")
        made = time.time() - age
        os.utime(path, (made, made))
        return path

    stale = half_made("stale", workdirs.STALE_CREATING_SECONDS + 1)
    fresh = half_made("fresh", 0)
    held = half_made("held", workdirs.STALE_CREATING_SECONDS + 1)
    with open(held / "lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.utime(held, (time.time() - workdirs.STALE_CREATING_SECONDS - 1,) * 2)
        assert workdirs.sweep(tmp_path, "mine-", lambda workdir: None) == set()
    assert not stale.exists()
    assert fresh.is_dir() and held.is_dir()
