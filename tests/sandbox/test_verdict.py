"""Unit tests of sandbox.verdict: how an exit status reads, and which reason a run ends with."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.contract import Limits, MiB, Reason, Status, Stream
from sandbox.process_count import ProcessSamples
from sandbox.pump import OutputPump
from sandbox.verdict import decide, exit_status


@pytest.mark.parametrize(
    ("returncode", "expected"),
    [
        (0, (0, None)),
        (3, (3, None)),
        (-9, (137, 9)),  # subprocess: killed by SIGKILL
        (137, (137, 9)),  # runsc and docker report the same death so
        (128, (128, None)),
        (None, (None, None)),
    ],
)
def test_an_exit_status_reads_as_a_shell_reports_it(
    returncode: int | None, expected: tuple[int | None, int | None]
) -> None:
    assert exit_status(returncode) == expected


# -- decide: the disk limit ---------------------------------------------------------------------------

LIMITS = Limits(tmp_bytes=8 * MiB, file_size_bytes=1 * MiB)
CAPS: dict[str, Any] = dict(wall_seconds=10, stdout_cap=MiB, stderr_cap=MiB)
TRACEBACK = b'Traceback (most recent call last):\n  File "/code/main.py", line 3, in <module>\n'


def pump_with(stderr: bytes) -> OutputPump:
    """A pump (never run) that kept `stderr` from the program."""
    pump = OutputPump(stdout=-1, stderr=-1, exited=lambda: True, kill=lambda: None, **CAPS)
    pump.kept[Stream.STDERR] += stderr
    return pump


def verdict(pump: OutputPump, returncode: int, **kwargs: Any) -> tuple[Status, Reason | None, str]:
    v = decide(
        pump=pump, limits=LIMITS, counts=ProcessSamples(LIMITS.processes), returncode=returncode, ended=0.0, **kwargs
    )
    return v.status, v.reason, v.detail


def test_a_failure_on_a_full_tmp_is_the_disk_limit() -> None:
    pump = pump_with(TRACEBACK + b"OSError: [Errno 28] No space left on device\n")
    assert verdict(pump, 1) == (
        Status.FAILED,
        Reason.DISK_LIMIT,
        f"a write failed with ENOSPC: /tmp is full (it holds at most {8 * MiB} bytes)",
    )


def test_a_failure_on_a_file_over_the_size_limit_is_the_disk_limit() -> None:
    pump = pump_with(TRACEBACK + b"OSError: [Errno 27] File too large\n")
    assert verdict(pump, 1)[:2] == (Status.FAILED, Reason.DISK_LIMIT)
    assert "file size limit of 1048576 bytes" in verdict(pump, 1)[2]


@pytest.mark.parametrize("returncode", [128 + 25, -25], ids=["gvisor", "subprocess"])
def test_death_by_sigxfsz_is_the_disk_limit(returncode: int) -> None:
    status, reason, detail = verdict(pump_with(b""), returncode)
    assert (status, reason) == (Status.FAILED, Reason.DISK_LIMIT)
    assert detail.startswith("killed by SIGXFSZ")


def test_a_program_that_handled_a_full_disk_and_succeeded_succeeded() -> None:
    assert verdict(pump_with(b"OSError: [Errno 28] No space left on device\n"), 0) == (Status.SUCCEEDED, None, "")


def test_a_full_disk_that_is_not_how_the_program_ended_is_its_exit_code() -> None:
    pump = pump_with(b"OSError: [Errno 28] No space left on device\nValueError: later\n")
    assert verdict(pump, 1)[:2] == (Status.FAILED, Reason.EXIT_CODE)


def test_a_limit_we_enforced_comes_before_the_disk_limit() -> None:
    full = TRACEBACK + b"OSError: [Errno 28] No space left on device\n"
    assert verdict(pump_with(full), 137, out_of_memory=True)[1] is Reason.MEMORY_LIMIT
    timed_out = pump_with(full)
    timed_out.kill(Reason.TIMEOUT)
    assert verdict(timed_out, 137)[1] is Reason.TIMEOUT
