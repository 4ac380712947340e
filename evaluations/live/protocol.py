"""The live protocol (docs/live-runs.md) in one place: close codes, the messages clients get, and
the channel-layer events that carry them between publishers and consumers."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs

from evaluations.runs.logstore import STREAMS

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_RATE_LIMITED = 4429  # too many connects: the user's API rate (evaluations/api/throttling.py)
CLOSE_TRY_AGAIN = 1013  # the database or Redis cannot be reached just now (RFC 6455's "Try Again Later")

# Frames stay within 64 KiB (daphne resets a connection at 1 MiB): base64 grows data by 4/3, and
# the JSON envelope needs a little room.
FRAME_BYTES = 47 * 1024
METRICS_PER_FRAME = 400


def parse_offsets(query_string: bytes) -> dict[str, int]:
    """`stdout=N&stderr=M`, whole numbers ≥ 0; anything else is ValueError."""
    try:
        query = parse_qs(query_string.decode("ascii"), strict_parsing=False, max_num_fields=10)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError("bad query string") from exc
    offsets = {}
    for stream in STREAMS:
        values = query.pop(stream, ["0"])
        if len(values) != 1 or not values[0].isdigit() or len(values[0]) > 18:
            raise ValueError(f"{stream} must be a whole number of bytes")
        offsets[stream] = int(values[0])
    if query:
        raise ValueError(f"unknown parameters: {', '.join(sorted(query))}")
    return offsets


# -- messages to clients --------------------------------------------------------------------------


def output_message(stream: str, offset: int, data: bytes) -> dict[str, Any]:
    return {"type": "output", "stream": stream, "offset": offset, "data": base64.b64encode(data).decode()}


def output_frames(stream: str, offset: int, data: bytes) -> list[dict[str, Any]]:
    return [output_message(stream, offset + i, data[i : i + FRAME_BYTES]) for i in range(0, len(data), FRAME_BYTES)]


def metrics_message(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "metrics", "samples": samples}


def status_message(run, *, queue_position: int | None, server_time: str, waiting: str | None = None) -> dict[str, Any]:
    """The `status` message for a run (pages count elapsed time on `server_time`, not their clock)."""

    def iso(value) -> str | None:
        return value.isoformat() if value else None

    return {
        "type": "status",
        "status": run.status,
        "reason": run.reason,
        "detail": run.detail,
        "exit_code": run.exit_code,
        "queued_at": iso(run.queued_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "stdout_bytes": run.stdout_bytes,
        "stderr_bytes": run.stderr_bytes,
        "stdout_truncated": run.stdout_truncated,
        "stderr_truncated": run.stderr_truncated,
        "cpu_seconds": run.cpu_seconds,
        "peak_memory_bytes": run.peak_memory_bytes,
        "run_seconds": run.run_seconds,
        "queue_position": queue_position,
        "waiting": waiting,  # why a queued run waits beyond its turn, e.g. "no worker is available"
        "server_time": server_time,
    }


# -- channel-layer events: the type names the consumer's handler (run.status -> run_status) ------


def status_event(payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "run.status", "payload": payload}


def output_event(frame: dict[str, Any]) -> dict[str, Any]:
    return {"type": "run.output", "payload": frame}


def metrics_event(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "run.metrics", "payload": metrics_message(samples)}


ACCESS_CHECK_EVENT = {"type": "access.check"}
