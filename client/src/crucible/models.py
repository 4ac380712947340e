"""Typed results of the API: frozen dataclasses built from its JSON (docs/openapi.yaml on the
server). Each keeps the JSON it came from in `raw`, which `--json` prints unchanged."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "error")
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "error"})
STREAMS = ("stdout", "stderr")


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass(frozen=True)
class Limits:
    wall_seconds: float
    memory_mb: int


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float | None
    peak_memory_bytes: int | None
    peak_processes: int | None


@dataclass(frozen=True)
class SubmissionRef:
    id: int
    name: str
    owner: str
    shared_with_team: bool
    entrypoint: str = ""
    archive_name: str = ""
    argv: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSummary:
    """A run as lists show it: status, limits, usage, byte counts; no output."""

    id: int
    url: str
    api_url: str
    submission: SubmissionRef
    status: str
    reason: str | None
    detail: str
    exit_code: int | None
    limits: Limits
    usage: Usage
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    queue_seconds: float | None
    run_seconds: float | None
    stdout_bytes: int
    stderr_bytes: int
    stdout_truncated: bool
    stderr_truncated: bool
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSummary:
        return cls(**_summary_fields(data))


@dataclass(frozen=True)
class Run(RunSummary):
    """A run in full, with its output as stored when it was read."""

    queue_position: int | None = None
    waiting: str | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    logs_url: str = ""
    websocket_path: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        return cls(
            **_summary_fields(data),
            queue_position=data.get("queue_position"),
            waiting=data.get("waiting"),
            stdout=base64.b64decode(data.get("stdout_base64") or ""),
            stderr=base64.b64decode(data.get("stderr_base64") or ""),
            logs_url=data.get("logs_url", ""),
            websocket_path=data.get("websocket_path") or f"/ws/runs/{data['id']}/",
        )


def _summary_fields(data: dict[str, Any]) -> dict[str, Any]:
    sub, limits, usage = data["submission"], data["limits"], data["usage"]
    return {
        "id": data["id"],
        "url": data["url"],
        "api_url": data["api_url"],
        "submission": SubmissionRef(
            id=sub["id"],
            name=sub.get("name", ""),
            owner=sub.get("owner", ""),
            shared_with_team=sub.get("shared_with_team", False),
            entrypoint=sub.get("entrypoint", ""),
            archive_name=sub.get("archive_name", ""),
            argv=tuple(sub.get("argv") or ()),
        ),
        "status": data["status"],
        "reason": data.get("reason"),
        "detail": data.get("detail") or "",
        "exit_code": data.get("exit_code"),
        "limits": Limits(wall_seconds=limits["wall_seconds"], memory_mb=limits["memory_mb"]),
        "usage": Usage(
            cpu_seconds=usage.get("cpu_seconds"),
            peak_memory_bytes=usage.get("peak_memory_bytes"),
            peak_processes=usage.get("peak_processes"),
        ),
        "queued_at": _time(data.get("queued_at")),
        "started_at": _time(data.get("started_at")),
        "finished_at": _time(data.get("finished_at")),
        "queue_seconds": data.get("queue_seconds"),
        "run_seconds": data.get("run_seconds"),
        "stdout_bytes": data.get("stdout_bytes", 0),
        "stderr_bytes": data.get("stderr_bytes", 0),
        "stdout_truncated": data.get("stdout_truncated", False),
        "stderr_truncated": data.get("stderr_truncated", False),
        "raw": data,
    }


@dataclass(frozen=True)
class LogChunk:
    """Stored bytes of one stream from `offset`; `complete` once the run ended (nothing more comes)."""

    stream: str
    offset: int
    data: bytes
    next_offset: int
    size: int
    complete: bool
    filename: str | None = None


@dataclass(frozen=True)
class MetricSample:
    t: float
    cpu_seconds: float | None
    cpu_percent: float | None
    memory_bytes: int | None
    processes: int | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MetricSample:
        return cls(
            t=data["t"],
            cpu_seconds=data.get("cpu_seconds"),
            cpu_percent=data.get("cpu_percent"),
            memory_bytes=data.get("memory_bytes"),
            processes=data.get("processes"),
        )


# -- live events (docs/live-runs.md on the server): what Client.follow yields -----------------------


@dataclass(frozen=True)
class Output:
    stream: str
    offset: int
    data: bytes


@dataclass(frozen=True)
class Status:
    status: str
    reason: str | None
    exit_code: int | None
    detail: str
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    server_time: datetime | None
    queue_position: int | None
    waiting: str | None
    cpu_seconds: float | None
    peak_memory_bytes: int | None
    run_seconds: float | None
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Status:
        return cls(
            status=data["status"],
            reason=data.get("reason"),
            exit_code=data.get("exit_code"),
            detail=data.get("detail") or "",
            queued_at=_time(data.get("queued_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            server_time=_time(data.get("server_time")),
            queue_position=data.get("queue_position"),
            waiting=data.get("waiting"),
            cpu_seconds=data.get("cpu_seconds"),
            peak_memory_bytes=data.get("peak_memory_bytes"),
            run_seconds=data.get("run_seconds"),
            raw=data,
        )


@dataclass(frozen=True)
class Metrics:
    samples: tuple[MetricSample, ...]


@dataclass(frozen=True)
class Reconnecting:
    """The socket dropped; the client reconnects from the offsets it has (`attempt` from 1)."""

    attempt: int
    delay: float
    error: str


Event = Output | Status | Metrics | Reconnecting


# -- batches: one program over inputs × configurations ------------------------------------------------


@dataclass(frozen=True)
class BatchConfig:
    label: str
    wall_seconds: float | None
    memory_mb: int | None


@dataclass(frozen=True)
class BatchRun:
    id: int
    api_url: str
    input_index: int | None
    config_index: int | None
    status: str
    reason: str | None
    exit_code: int | None


@dataclass(frozen=True)
class Batch:
    """A batch with its counts by status and reason; `runs` only when read by id (empty in lists)."""

    id: int
    url: str
    api_url: str
    name: str
    owner: str
    submission_id: int
    rerun_of: int | None
    created: datetime | None
    configs: tuple[BatchConfig, ...]
    total: int
    done: bool
    counts: dict[str, int] = field(hash=False)
    reasons: dict[str, int] = field(hash=False)
    median_run_seconds: float | None
    p95_run_seconds: float | None
    results_csv_url: str
    results_json_url: str
    runs: tuple[BatchRun, ...]
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def all_succeeded(self) -> bool:
        return self.done and self.counts.get("succeeded", 0) == self.total

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Batch:
        return cls(
            id=data["id"],
            url=data.get("url", ""),
            api_url=data.get("api_url", ""),
            name=data.get("name", ""),
            owner=data.get("owner", ""),
            submission_id=data.get("submission_id", 0),
            rerun_of=data.get("rerun_of"),
            created=_time(data.get("created")),
            configs=tuple(
                BatchConfig(label=c.get("label", ""), wall_seconds=c.get("wall_seconds"), memory_mb=c.get("memory_mb"))
                for c in data.get("configs") or ()
            ),
            total=data.get("total", 0),
            done=bool(data.get("done")),
            counts=dict(data.get("counts") or {}),
            reasons=dict(data.get("reasons") or {}),
            median_run_seconds=data.get("median_run_seconds"),
            p95_run_seconds=data.get("p95_run_seconds"),
            results_csv_url=data.get("results_csv_url", ""),
            results_json_url=data.get("results_json_url", ""),
            runs=tuple(
                BatchRun(
                    id=r["id"],
                    api_url=r.get("api_url", ""),
                    input_index=r.get("input_index"),
                    config_index=r.get("config_index"),
                    status=r["status"],
                    reason=r.get("reason"),
                    exit_code=r.get("exit_code"),
                )
                for r in data.get("runs") or ()
            ),
            raw=data,
        )
