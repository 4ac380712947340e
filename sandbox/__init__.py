"""Crucible's execution layer: run untrusted code in a fresh gVisor sandbox with hard limits.

Pure Python, no Django: configuration comes in as arguments (EngineConfig), results go out as
frozen dataclasses. `python -m sandbox --help` for the command line; docs/sandbox.md for the design.
"""

from sandbox.contract import (
    LIMIT_SPECS,
    ExecRequest,
    ExecResult,
    GiB,
    KiB,
    Limits,
    MiB,
    Reason,
    Status,
    Stream,
    StreamResult,
    check_relative_path,
)
from sandbox.engine import EngineConfig, ExecutionEngine, MetricSample, engine_names, get_engine
from sandbox.errors import EngineUnavailable, ImageError, InvalidRequest, SandboxError

__all__ = [
    "check_relative_path",
    "LIMIT_SPECS",
    "EngineConfig",
    "EngineUnavailable",
    "ExecRequest",
    "ExecResult",
    "ExecutionEngine",
    "GiB",
    "ImageError",
    "InvalidRequest",
    "KiB",
    "Limits",
    "MetricSample",
    "MiB",
    "Reason",
    "SandboxError",
    "Status",
    "Stream",
    "StreamResult",
    "engine_names",
    "get_engine",
]
