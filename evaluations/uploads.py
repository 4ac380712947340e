"""Uploaded code files: size- and encoding-checked before anything is stored."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError

from evaluations.services import code_validate


def code_from_upload(upload, *, field: str) -> str:
    max_bytes = settings.CRUCIBLE_MAX_CODE_BYTES
    name = upload.name or ""
    if not name.endswith(".py"):
        raise ValidationError({field: f"must be a .py file, got {name!r}"})
    if upload.size > max_bytes:
        raise ValidationError({field: f"is {upload.size} bytes; the limit is {max_bytes} bytes"})
    data = upload.read(max_bytes + 1)
    try:
        code = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError({field: f"is not UTF-8 text (invalid byte at offset {exc.start})"}) from None
    code_validate(code, field=field)
    return code
