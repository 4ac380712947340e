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
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from evaluations import unavailable
from evaluations.accounts.quotas import QuotaExceeded


def exception_handler(exc, context):
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        from evaluations.api.throttling import throttle_unauthenticated

        wait = throttle_unauthenticated(context["request"], context.get("view"))
        if wait is not None:
            exc = RateLimited(wait=wait)
    if isinstance(exc, QuotaExceeded):
        return quota_exceeded_response(exc)
    service = unavailable.unavailable_service(exc)
    if service is not None:
        return service_unavailable_response(context["request"], exc, service)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages})
    elif isinstance(exc, RequestDataTooBig):
        exc = exceptions.ValidationError({"detail": body_too_large_message()})
    elif isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        exc = exceptions.ValidationError({"detail": "too many fields or files in the request"})
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ValidationError({"detail": "the request was malformed and has been rejected"})
    elif type(exc) is exceptions.Throttled and str(exc.detail).startswith(str(exceptions.Throttled.default_detail)):
        # DRF's own 429 from the rate limits (a quota's 429 brings its own message and is kept).
        exc = RateLimited(wait=exc.wait)
    return drf_exception_handler(exc, context)


class RateLimited(exceptions.Throttled):
    """A 429 that says which limits apply (DRF adds when to retry, and the Retry-After header)."""

    def __init__(self, wait: float | None = None) -> None:
        from evaluations.api.throttling import throttled_message

        super().__init__(wait=wait, detail=throttled_message())


def quota_exceeded_response(exc: QuotaExceeded) -> Response:
    # Built here rather than as an APIException, whose detail would turn the numbers into strings.
    set_rollback()
    response = Response(exc.as_dict(), status=429)
    retry_after = exc.retry_after_seconds()
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def service_unavailable_response(request, exc: Exception, service: str) -> Response:
    """The middleware's 503 (evaluations/unavailable.py), for DRF views, whose exceptions it never sees."""
    set_rollback()
    response = Response(
        unavailable.unavailable_body(service),
        status=503,
        headers={"Retry-After": str(unavailable.RETRY_AFTER_SECONDS)},
    )
    unavailable.unavailable_log(request, exc, service, response)
    return response


def body_too_large_message() -> str:
    return (
        f"the request body is too large: code is limited to {settings.CRUCIBLE_MAX_CODE_BYTES} bytes "
        f"and a request body to {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
    )


# The error bodies, for the schema (evaluations/api/openapi.py says which operation answers which).


@extend_schema_serializer(component_name="Error")
class ErrorOutput(serializers.Serializer):
    detail = serializers.CharField(help_text="what was wrong, and what to do")


@extend_schema_serializer(component_name="ValidationError")
class ValidationErrorOutput(serializers.Serializer):
    """{field name: [messages]}; `detail` for the request as a whole (a string for a malformed body)."""


@extend_schema_serializer(component_name="QuotaExceeded")
class QuotaExceededOutput(ErrorOutput):
    """A 429 for a quota; a 429 for the rate limit has `detail` only."""

    quota = serializers.ChoiceField(
        choices=["runs_per_day", "cpu_seconds_per_day", "concurrent_runs", "storage_bytes"], required=False
    )
    limit = serializers.FloatField(required=False)
    usage = serializers.FloatField(required=False)
    resets_at = serializers.DateTimeField(required=False, allow_null=True, help_text="null: when a run ends")


@extend_schema_serializer(component_name="Unavailable")
class UnavailableOutput(ErrorOutput):
    code = serializers.ChoiceField(choices=["unavailable"])
