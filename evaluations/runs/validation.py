"""Checks on what a user submits: code, project archives, entry point, inputs and limits.

Each raises Django's ValidationError naming the field and the allowed range, before anything is
stored. The maxima are the site's, or the user's quotas where those are lower.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError

import sandbox
from evaluations.accounts.quotas import Ceiling, Quotas, run_ceilings
from sandbox.archive import unpack_archive
from sandbox.contract import MiB, relative_path_problem, shown_path

# The smallest limits the sandbox accepts (the quota fields are validated against the same specs).
MIN_MEMORY_MB = int(sandbox.LIMIT_SPECS["memory_bytes"].minimum) // MiB
MIN_WALL_SECONDS = sandbox.LIMIT_SPECS["wall_seconds"].minimum
MAX_ARGS = 256
MAX_ARG_CHARS = 4096


def limits_build(*, wall_seconds: float | None, memory_mb: int | None, quotas: Quotas | None = None) -> sandbox.Limits:
    """Validate user-requested limits and return sandbox Limits. The maxima are the site's, or the
    user's quotas where those are lower; the output cap is not requested: every run gets the maximum."""
    errors: dict[str, str] = {}
    ceilings = run_ceilings(quotas)
    max_wall, max_mb = ceilings.wall_seconds.value, ceilings.memory_mb.value
    # A default above a user's maximum is lowered to it: leaving the field empty always works.
    wall = min(settings.CRUCIBLE_DEFAULT_WALL_SECONDS, max_wall) if wall_seconds is None else wall_seconds
    memory = min(settings.CRUCIBLE_DEFAULT_MEMORY_MB, max_mb) if memory_mb is None else memory_mb
    # `not (a <= x <= b)` is also true for NaN.
    if not (MIN_WALL_SECONDS <= wall <= max_wall):
        errors["wall_seconds"] = (
            f"must be between {MIN_WALL_SECONDS:g} and {max_wall:g} seconds{ceilings.wall_seconds.why()}, got {wall:g}"
        )
    if not (MIN_MEMORY_MB <= memory <= max_mb):
        errors["memory_mb"] = (
            f"must be between {MIN_MEMORY_MB} and {max_mb} MiB{ceilings.memory_mb.why()}, got {memory}"
        )
    if errors:
        raise ValidationError(errors)
    memory_bytes = int(memory) * MiB
    output = int(ceilings.output_bytes.value)
    try:
        return sandbox.Limits(
            wall_seconds=float(wall),
            memory_bytes=memory_bytes,
            tmp_bytes=min(sandbox.Limits.tmp_bytes, memory_bytes // 2),
            stdout_bytes=output,
            stderr_bytes=output,
        )
    except sandbox.InvalidRequest as exc:
        raise ValidationError({exc.field: exc.message}) from exc


def code_validate(code: str, *, field: str = "code", ceiling: Ceiling | None = None) -> None:
    max_bytes = settings.CRUCIBLE_MAX_CODE_BYTES if ceiling is None else int(ceiling.value)
    why = ceiling.why() if ceiling is not None else ""
    if not code.strip():
        raise ValidationError({field: "must not be empty: paste Python code or upload a .py file"})
    try:
        size = len(code.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError({field: "is not valid UTF-8 text"}) from None
    if size > max_bytes:
        raise ValidationError({field: f"is {size} bytes; the limit is {max_bytes} bytes{why}"})
    if "\x00" in code:
        raise ValidationError({field: "contains a NUL byte; Python source cannot"})


def archive_size_validate(archive: bytes | memoryview, *, ceiling: Ceiling) -> None:
    if len(archive) > ceiling.value:
        raise ValidationError(
            {"file": f"is {len(archive)} bytes; the limit for a project is {int(ceiling.value)} bytes{ceiling.why()}"}
        )


def submission_name_clean(name: str | None) -> str:
    name = (name or "").strip() or "untitled"
    if len(name) > 200:
        raise ValidationError({"name": f"must be at most 200 characters, got {len(name)}"})
    if "\x00" in name:
        raise ValidationError({"name": "contains a NUL byte"})
    return name


def project_files(*, archive: bytes, archive_name: str, entrypoint: str) -> dict[str, bytes]:
    """The checked files of a project archive; ValidationError naming the offending entry."""
    try:
        files = unpack_archive(
            archive,
            archive_name,
            max_entries=settings.CRUCIBLE_MAX_PROJECT_FILES,
            max_total_bytes=settings.CRUCIBLE_MAX_PROJECT_BYTES,
        )
    except sandbox.InvalidRequest as exc:
        raise ValidationError({"file": exc.message}) from exc
    if entrypoint not in files:
        listed = ", ".join(sorted(n for n in files if n.endswith(".py"))[:20]) or "no .py files"
        raise ValidationError({"entrypoint": f"{entrypoint!r} is not in the archive; its Python files: {listed}"})
    return files


def entrypoint_clean(entrypoint: str | None) -> str:
    entrypoint = (entrypoint or "").strip() or "main.py"
    problem = relative_path_problem(entrypoint)
    if problem is not None:
        raise ValidationError(
            {"entrypoint": f"must be a relative path inside the project ({problem}), got {shown_path(entrypoint)}"}
        )
    if not entrypoint.endswith(".py") or len(entrypoint) > 255:
        raise ValidationError({"entrypoint": "must name a .py file (at most 255 characters)"})
    return entrypoint


def run_inputs_validate(*, stdin: str, argv: list[str]) -> None:
    max_stdin = settings.CRUCIBLE_MAX_STDIN_BYTES
    try:
        size = len(stdin.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError({"stdin": "is not valid UTF-8 text"}) from None
    if size > max_stdin:
        raise ValidationError({"stdin": f"is {size} bytes; the limit is {max_stdin} bytes"})
    if "\x00" in stdin:
        raise ValidationError({"stdin": "contains a NUL byte"})
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValidationError({"argv": "must be a list of strings"})
    if len(argv) > MAX_ARGS or any(len(a) > MAX_ARG_CHARS or "\x00" in a for a in argv):
        raise ValidationError(
            {"argv": f"at most {MAX_ARGS} arguments of at most {MAX_ARG_CHARS} characters, without NUL"}
        )
