"""The typed contract between callers and sandbox engines: requests, limits, results.

This module is the one definition of the run status/reason vocabulary; the Django side builds its
TextChoices from these enums so the words cannot drift apart.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sandbox.errors import InvalidRequest

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


class Status(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ERROR = "error"

    @property
    def is_terminal(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING)


class Reason(enum.StrEnum):
    EXIT_CODE = "exit_code"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    PIDS_LIMIT = "pids_limit"
    DISK_LIMIT = "disk_limit"
    CANCELLED = "cancelled"
    WORKER_LOST = "worker_lost"
    SANDBOX_ERROR = "sandbox_error"
    REJECTED = "rejected"
    STORAGE_ERROR = "storage_error"  # ours, outside the sandbox: the log store or database failed


class Stream(enum.StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


@dataclass(frozen=True)
class LimitSpec:
    """One limit: its unit, default and the largest value a request may ask for."""

    name: str
    unit: str
    default: int | float
    minimum: int | float
    maximum: int | float

    @property
    def integer(self) -> bool:
        return isinstance(self.default, int)


# Defaults and ceilings. Zero is never "unlimited": every value must lie in [minimum, maximum].
LIMIT_SPECS: Mapping[str, LimitSpec] = MappingProxyType(
    {
        s.name: s
        for s in (
            LimitSpec("wall_seconds", "s", 10.0, 0.1, 600.0),
            LimitSpec("cpu_cores", "cores", 1.0, 0.05, 8.0),
            LimitSpec("memory_bytes", "bytes", 256 * MiB, 32 * MiB, 8 * GiB),
            LimitSpec("processes", "processes", 64, 1, 1024),
            LimitSpec("tmp_bytes", "bytes", 64 * MiB, 1 * MiB, 4 * GiB),
            LimitSpec("file_size_bytes", "bytes", 64 * MiB, 1 * KiB, 4 * GiB),
            LimitSpec("open_files", "files", 256, 16, 65536),
            LimitSpec("stdout_bytes", "bytes", 1 * MiB, 1 * KiB, 1 * GiB),
            LimitSpec("stderr_bytes", "bytes", 1 * MiB, 1 * KiB, 1 * GiB),
        )
    }
)


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = float(LIMIT_SPECS["wall_seconds"].default)
    cpu_cores: float = float(LIMIT_SPECS["cpu_cores"].default)
    memory_bytes: int = int(LIMIT_SPECS["memory_bytes"].default)
    processes: int = int(LIMIT_SPECS["processes"].default)
    tmp_bytes: int = int(LIMIT_SPECS["tmp_bytes"].default)
    file_size_bytes: int = int(LIMIT_SPECS["file_size_bytes"].default)
    open_files: int = int(LIMIT_SPECS["open_files"].default)
    stdout_bytes: int = int(LIMIT_SPECS["stdout_bytes"].default)
    stderr_bytes: int = int(LIMIT_SPECS["stderr_bytes"].default)

    def __post_init__(self) -> None:
        for name, spec in LIMIT_SPECS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidRequest(name, f"must be a number, got {value!r}")
            if spec.integer and not isinstance(value, int):
                raise InvalidRequest(name, f"must be a whole number of {spec.unit}, got {value!r}")
            if not spec.minimum <= value <= spec.maximum:
                raise InvalidRequest(
                    name, f"must be between {spec.minimum} and {spec.maximum} {spec.unit}, got {value}"
                )
        # /tmp is a tmpfs held in the sandbox's memory: one at least as large as the memory limit
        # would turn a disk fill into an OOM instead of ENOSPC.
        if self.tmp_bytes >= self.memory_bytes:
            raise InvalidRequest("tmp_bytes", "must be smaller than memory_bytes")


MAX_FILES = 1000
MAX_TOTAL_FILE_BYTES = 64 * MiB


@dataclass(frozen=True)
class ExecRequest:
    """What to run. `files` become a read-only /code; the entry point runs with cwd /code."""

    files: Mapping[str, bytes]
    entrypoint: str = "main.py"
    argv: tuple[str, ...] = ()
    stdin: bytes = b""
    # Only these variables exist inside the sandbox: the worker's own environment never does.
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    image: str = "python3"  # an image name (python3.11, ...) or "python3" for the default one
    limits: Limits = field(default_factory=Limits)
    # The program may start in an interpreter that has imported common modules already (a pooled
    # sandbox's, docs/sandbox.md): faster, but they count in its memory, and so in each fork's.
    preload: bool = False

    def __post_init__(self) -> None:
        if not self.files:
            raise InvalidRequest("files", "at least one file is required")
        if len(self.files) > MAX_FILES:
            raise InvalidRequest("files", f"at most {MAX_FILES} files")
        total = 0
        for name, data in self.files.items():
            check_relative_path(name)
            if not isinstance(data, bytes):
                raise InvalidRequest("files", f"{name}: content must be bytes")
            total += len(data)
        if total > MAX_TOTAL_FILE_BYTES:
            raise InvalidRequest("files", f"total size must be at most {MAX_TOTAL_FILE_BYTES} bytes")
        if self.entrypoint not in self.files:
            raise InvalidRequest("entrypoint", f"{self.entrypoint!r} is not among the files")
        for key in self.env:
            if not key or "=" in key or "\0" in key or "\0" in self.env[key]:
                raise InvalidRequest("env", f"invalid variable name or value: {key!r}")
        if any("\0" in arg for arg in self.argv):
            raise InvalidRequest("argv", "NUL bytes are not allowed in arguments")  # no command line can carry one
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        object.__setattr__(self, "argv", tuple(self.argv))


# The longest file or directory name Linux file systems take, in bytes.
NAME_MAX_BYTES = 255


def relative_path_problem(name: str) -> str | None:
    """Why `name` cannot be a file's path under /code, or None if it can: the one rule for the
    request's files and for the entries of project archives (sandbox/archive.py)."""
    if not name:
        return "the name is empty"
    if name.startswith("/"):
        return "absolute paths are not allowed"
    if "\\" in name:
        return "backslashes are not allowed in paths"
    if "\0" in name:
        return "NUL bytes are not allowed in paths"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # raw bytes kept as lone surrogates (tar names, surrogateescape)
        return "the name is not valid UTF-8"
    parts = name.split("/")
    if ".." in parts:
        return "'..' is not allowed in paths"
    if "" in parts or "." in parts:
        return "empty or '.' path components are not allowed"
    if any(len(part.encode("utf-8")) > NAME_MAX_BYTES for part in parts):
        return f"a file or directory name is longer than {NAME_MAX_BYTES} bytes"
    return None


def shown_path(name: str) -> str:
    """`name` quoted for a message: undecodable bytes (lone surrogates) as \\xNN, other odd characters
    escaped as repr() does, so the message itself is always valid UTF-8."""
    shown = (f"\\x{ord(ch) - 0xDC00:02x}" if "\udc80" <= ch <= "\udcff" else repr(ch)[1:-1] for ch in name)
    return "'" + "".join(shown) + "'"


def check_relative_path(name: str) -> None:
    problem = relative_path_problem(name)
    if problem is not None:
        raise InvalidRequest("files", f"unsafe file name {shown_path(name)}: {problem}")


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None
    # The most tasks (processes plus threads: what `Limits.processes` counts) seen at once inside
    # the sandbox. Sampled, so a brief peak between samples can be missed; None if never sampled.
    peak_processes: int | None = None


@dataclass(frozen=True)
class Timings:
    boot_seconds: float | None = None  # 0.0 for a sandbox booted before its run (pooled)
    run_seconds: float = 0.0
    teardown_seconds: float = 0.0
    pooled: bool = False  # the run took a sandbox booted ahead of it (sandbox/pool.py)


@dataclass(frozen=True)
class StreamResult:
    data: bytes
    bytes_written: int
    truncated: bool


@dataclass(frozen=True)
class ExecResult:
    status: Status
    reason: Reason | None
    exit_code: int | None
    signal: int | None
    stdout: StreamResult
    stderr: StreamResult
    usage: Usage
    timings: Timings
    engine: str
    runtime_version: str
    image_digest: str
    detail: str = ""  # a human sentence for error/limit outcomes; never contains host secrets


# on_output(stream, offset, chunk): called as bytes arrive, in chunks (never line by line).
OutputCallback = Callable[[Stream, int, bytes], None]
