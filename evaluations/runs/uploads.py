"""Uploaded files: a single .py file or a project archive, checked before anything is stored."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError

from sandbox.archive import SUFFIXES, archive_kind


@dataclass(frozen=True)
class UploadedSource:
    code: str | None = None
    archive: bytes | None = None
    archive_name: str = ""


def read_upload(upload, *, field: str) -> UploadedSource:
    name = upload.name or ""
    if name.endswith(".py"):
        max_bytes = settings.CRUCIBLE_MAX_CODE_BYTES
        if upload.size > max_bytes:
            raise ValidationError({field: f"is {upload.size} bytes; the limit is {max_bytes} bytes"})
        data = upload.read(max_bytes + 1)
        try:
            return UploadedSource(code=data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ValidationError({field: f"is not UTF-8 text (invalid byte at offset {exc.start})"}) from None
    if archive_kind(name):
        max_bytes = settings.CRUCIBLE_MAX_UPLOAD_BYTES
        if upload.size > max_bytes:
            raise ValidationError({field: f"is {upload.size} bytes; the limit for a project is {max_bytes} bytes"})
        return UploadedSource(archive=upload.read(max_bytes + 1), archive_name=name)
    kinds = ", ".join([".py", *SUFFIXES])
    raise ValidationError({field: f"must be a .py file or a project archive ({kinds}), got {name!r}"})


def argv_from_text(text: str | None, *, field: str = "argv") -> list[str]:
    """Command-line arguments typed as one line, split like a POSIX shell would (no expansion)."""
    if not text:
        return []
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ValidationError({field: f"cannot be split into arguments: {exc}"}) from None
