"""Crucible's Python client and the `crucible` command (client/README.md).

import crucible
with crucible.Client("https://crucible.example.org", token) as client:
    run = client.submit(code="print(42)\n")
    for event in client.follow(run.id): ...
"""

from crucible.client import Client
from crucible.errors import (
    ApiError,
    ConfigError,
    Conflict,
    ConnectionFailed,
    CrucibleError,
    Gone,
    InvalidRequest,
    LiveRefused,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from crucible.models import (
    Batch,
    BatchConfig,
    BatchRun,
    Limits,
    LogChunk,
    Metrics,
    MetricSample,
    Output,
    Reconnecting,
    Run,
    RunSummary,
    Status,
    SubmissionRef,
    Usage,
)

__all__ = [
    "ApiError",
    "Batch",
    "BatchConfig",
    "BatchRun",
    "Client",
    "ConfigError",
    "Conflict",
    "ConnectionFailed",
    "CrucibleError",
    "Gone",
    "InvalidRequest",
    "Limits",
    "LiveRefused",
    "LogChunk",
    "MetricSample",
    "Metrics",
    "NotFound",
    "Output",
    "RateLimited",
    "Reconnecting",
    "Run",
    "RunSummary",
    "Status",
    "SubmissionRef",
    "Unauthorized",
    "Unavailable",
    "Usage",
]
