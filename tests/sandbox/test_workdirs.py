"""Unit tests of sandbox.workdirs: a run's work dir, its lock, its code, and the sweep."""

from __future__ import annotations

import fcntl
import stat
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


def test_the_code_is_written_readable_below_code(tmp_path: Path) -> None:
    request = ExecRequest(files={"main.py": b"print(1)", "pkg/mod.py": b"X = 1"})
    code = workdirs.write_code(tmp_path, request)
    assert code == tmp_path / "code"
    assert (code / "pkg" / "mod.py").read_bytes() == b"X = 1"
    assert stat.S_IMODE((code / "main.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((code / "pkg").stat().st_mode) == 0o755


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
