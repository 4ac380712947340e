"""API error shape: always JSON, always 4xx for the caller's mistakes, with the field named."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages})
    elif isinstance(exc, RequestDataTooBig):
        exc = exceptions.ValidationError({"detail": body_too_large_message()})
    elif isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        exc = exceptions.ValidationError({"detail": "too many fields or files in the request"})
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ValidationError({"detail": "the request was malformed and has been rejected"})
    return drf_exception_handler(exc, context)


def body_too_large_message() -> str:
    return (
        f"the request body is too large: code is limited to {settings.CRUCIBLE_MAX_CODE_BYTES} bytes "
        f"and a request body to {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
    )
