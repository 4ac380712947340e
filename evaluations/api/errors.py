"""API error shape: always JSON, always 4xx for the caller's mistakes, with the field named."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages})
    elif isinstance(exc, RequestDataTooBig):
        exc = exceptions.ValidationError({"detail": "request body is too large; code is limited to 1 MiB"})
    elif isinstance(exc, TooManyFieldsSent):
        exc = exceptions.ValidationError({"detail": "too many fields in the request"})
    return drf_exception_handler(exc, context)
