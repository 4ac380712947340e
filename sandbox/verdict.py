"""How every engine turns what happened into a status and reason, and into its ExecResult.

Precedence: a cancel we were asked for, then memory (an OOM kill also ends output and may look
like a timeout), then the limit we enforced by killing, then a sandbox that never started, then
how the program failed: a full disk it reported, the process limit, else its exit code.
"""

from __future__ import annotations

import dataclasses
import signal
from dataclasses import dataclass

from sandbox.contract import ExecResult, Limits, Reason, Status, Stream, Timings, Usage
from sandbox.engine import ExecutionEngine
from sandbox.process_count import ProcessSamples
from sandbox.pump import OutputPump

# How a failed write ends the last line of a traceback (Python adds "[Errno N]" before these).
NO_SPACE = "No space left on device"  # ENOSPC: the run's writable space (/tmp) is full
FILE_TOO_LARGE = "File too large"  # EFBIG: a file reached RLIMIT_FSIZE
# The last bytes of stderr in which the program's last line is looked for.
STDERR_TAIL_BYTES = 4096


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: Reason | None
    detail: str


def decide(
    *,
    pump: OutputPump,
    limits: Limits,
    counts: ProcessSamples,
    returncode: int | None,
    ended: float,
    out_of_memory: bool = False,
    memory_detail: str = "",
    started: bool = True,
    start_failure: str = "",
    pids_backstop_hit: bool = False,
) -> Verdict:
    kill_reason = pump.kill_reason
    if kill_reason == Reason.CANCELLED:
        return Verdict(Status.CANCELLED, Reason.CANCELLED, "cancelled")
    if out_of_memory:
        return Verdict(
            Status.FAILED, Reason.MEMORY_LIMIT, memory_detail or f"memory limit of {limits.memory_bytes} bytes exceeded"
        )
    if kill_reason == Reason.OUTPUT_LIMIT:
        streams = ", ".join(s.value for s in pump.over_cap())
        return Verdict(Status.FAILED, Reason.OUTPUT_LIMIT, f"output limit exceeded on {streams}")
    if kill_reason == Reason.TIMEOUT:
        wall = f"wall-time limit of {limits.wall_seconds:g} s"
        if counts.held_until(pump.killed_at or ended):
            # Still at the limit when time ran out: a fork bomb held down, not a slow program.
            return Verdict(Status.FAILED, Reason.PIDS_LIMIT, f"{counts.detail()}; the run was stopped at the {wall}")
        return Verdict(Status.FAILED, Reason.TIMEOUT, f"{wall} exceeded")
    if not started or returncode is None:
        return Verdict(Status.ERROR, Reason.SANDBOX_ERROR, start_failure or "the sandbox did not start")
    if returncode == 0:
        return Verdict(Status.SUCCEEDED, None, "")
    disk_full = _disk_full(pump, limits, returncode)
    if disk_full:
        return Verdict(Status.FAILED, Reason.DISK_LIMIT, disk_full)
    if pids_backstop_hit:
        return Verdict(Status.FAILED, Reason.PIDS_LIMIT, "process limit reached")
    if counts.limit_reached:
        return Verdict(Status.FAILED, Reason.PIDS_LIMIT, f"{counts.detail()}; exited with code {returncode}")
    return Verdict(Status.FAILED, Reason.EXIT_CODE, f"exited with code {returncode}")


def last_stderr_line(pump: OutputPump) -> str:
    """The last non-empty line the program wrote to stderr: a Python traceback's exception."""
    tail = bytes(pump.kept[Stream.STDERR][-STDERR_TAIL_BYTES:]).decode("utf-8", "replace").strip()
    return tail.splitlines()[-1] if tail else ""


def _disk_full(pump: OutputPump, limits: Limits, returncode: int) -> str:
    """Why the program failed on a full disk, or "" if that is not what its end shows."""
    if exit_status(returncode)[1] == signal.SIGXFSZ:
        return f"killed by SIGXFSZ: a file reached the file size limit of {limits.file_size_bytes} bytes"
    last = last_stderr_line(pump)
    if NO_SPACE in last:
        return f"a write failed with ENOSPC: /tmp is full (it holds at most {limits.tmp_bytes} bytes)"
    if FILE_TOO_LARGE in last:
        return f"a write failed with EFBIG: a file reached the file size limit of {limits.file_size_bytes} bytes"
    return ""


def exit_status(returncode: int | None) -> tuple[int | None, int | None]:
    """(exit code, signal) as a shell reports them: death by signal N is exit code 128 + N.

    Args:
        returncode: the process's exit status, negative for a signal as subprocess reports it;
            128 + N from runsc and docker, which report a program's death by signal N so
            (a program that exits with 129-159 itself looks the same).
    """
    if returncode is None:
        return None, None
    if returncode < 0:
        return 128 - returncode, -returncode
    if 128 < returncode < 160:
        return returncode, returncode - 128
    return returncode, None


def exec_result(
    engine: ExecutionEngine,
    pump: OutputPump,
    verdict: Verdict,
    *,
    returncode: int | None,
    usage: Usage,
    timings: Timings,
) -> ExecResult:
    """The result of a run the pump drove to its end; the image digest and teardown come later."""
    exit_code, signal_no = exit_status(returncode)
    if verdict.status is Status.ERROR or pump.kill_reason is not None:
        exit_code, signal_no = None, None  # it never ran, or we ended it: that says nothing of the program
    return ExecResult(
        status=verdict.status,
        reason=verdict.reason,
        exit_code=exit_code,
        signal=signal_no,
        stdout=pump.stream_result(Stream.STDOUT),
        stderr=pump.stream_result(Stream.STDERR),
        usage=usage,
        timings=timings,
        engine=engine.name,
        runtime_version=engine.runtime_version(),
        image_digest="",
        detail=verdict.detail,
    )


def with_teardown(result: ExecResult, seconds: float, image_digest: str = "") -> ExecResult:
    """`result` with the time its teardown took and the digest of the image it ran on."""
    timings = dataclasses.replace(result.timings, teardown_seconds=seconds)
    return dataclasses.replace(result, timings=timings, image_digest=image_digest)
