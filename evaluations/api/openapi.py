"""What drf-spectacular needs beyond the views' own annotations: the token scheme, the error answers
every operation shares, the headers, and links between operations. `make openapi` writes the schema
to docs/openapi.yaml; /api/schema/ serves it and /api/docs/ shows it.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from evaluations.api import idempotency
from evaluations.api.errors import ErrorOutput, QuotaExceededOutput, UnavailableOutput, ValidationErrorOutput

API_PREFIX = "/api/v1/"


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = "evaluations.api.auth.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`: make a key on your profile page (/profile/).",
        }


class ValidationErrorSchema(OpenApiSerializerExtension):
    target_class = ValidationErrorOutput

    def map_serializer(self, auto_schema, direction):
        return {
            "type": "object",
            "description": ValidationErrorOutput.__doc__,
            "additionalProperties": {
                "oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}],
            },
            "example": {"wall_seconds": ["must be a number of seconds between 0.1 and 300"]},
        }


def response_header(name: str, codes: list[int], description: str, type_=OpenApiTypes.STR) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.HEADER, response=codes, description=description)


def _path_id(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.INT, OpenApiParameter.PATH, description=description)


RUN_ID = _path_id("run_id", "the run's `id`")
SUBMISSION_ID = _path_id("submission_id", "the submission's `id` (a run's `submission.id`)")

# Every operation may answer 401 (WWW-Authenticate), and 429 or 503 (Retry-After).
RETRY_AFTER = response_header("Retry-After", [429, 503], "seconds to wait before trying again", OpenApiTypes.INT)
WWW_AUTHENTICATE = response_header("WWW-Authenticate", [401], "`Token`: how to authenticate")
HEADERS = [RETRY_AFTER, WWW_AUTHENTICATE]

# Writes that create a run take an Idempotency-Key (evaluations/api/idempotency.py).
_PRINTABLE_NOT_BLANK = r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*$"
IDEMPOTENCY_KEY = OpenApiParameter(
    idempotency.HEADER,
    {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_CHARS, "pattern": _PRINTABLE_NOT_BLANK},
    OpenApiParameter.HEADER,
    description=(
        "Makes a retry safe: the same key with the same request within 24 hours gets the first answer "
        f"again (with `{idempotency.REPLAYED_HEADER}: true`) instead of a second run; the same key with "
        "another request answers 422. Up to 200 printable ASCII characters, e.g. a UUID."
    ),
)
REPLAYED = response_header(idempotency.REPLAYED_HEADER, [201], "`true`: the stored answer to an earlier request")
IDEMPOTENT_WRITE = [IDEMPOTENCY_KEY, REPLAYED, *HEADERS]
IN_PROGRESS = OpenApiResponse(ErrorOutput, description=f"a request with this {idempotency.HEADER} is in progress")

SUBMISSION_EXAMPLES = [
    OpenApiExample(
        "Code",
        value={"name": "hello", "code": "print(42)\n", "wall_seconds": 5, "memory_mb": 128},
        request_only=True,
        media_type="application/json",
    ),
    OpenApiExample(
        "Project upload",
        summary="A project archive: its main file, arguments and standard input",
        value={
            "name": "train",
            "file": "(the bytes of project.zip)",
            "entrypoint": "main.py",
            "argv": "--epochs 3",
            "stdin": "some input\n",
            "wall_seconds": 60,
        },
        request_only=True,
        media_type="multipart/form-data",
    ),
]

# The answers any operation may give, whatever it does: not authenticated, over a rate limit or a
# quota, the database or Redis unreachable.
_COMMON = {
    401: OpenApiResponse(ErrorOutput, description="no credentials, or a token that is unknown, revoked or expired"),
    429: OpenApiResponse(
        QuotaExceededOutput, description="over the API's rate limit or a quota (see Retry-After, when it applies)"
    ),
    503: OpenApiResponse(UnavailableOutput, description="the database or Redis cannot be reached; retry later"),
}
_KNOWN = {
    400: OpenApiResponse(ValidationErrorOutput, description="the request is invalid: each field says why"),
    403: OpenApiResponse(ErrorOutput, description="the role does not allow it, or a session sent no CSRF token"),
    404: OpenApiResponse(ErrorOutput, description="no such object, or one you may not see"),
    409: OpenApiResponse(ErrorOutput, description="the object's state does not allow it now"),
    415: OpenApiResponse(ErrorOutput, description="the body is not of a media type listed here"),
    422: OpenApiResponse(ErrorOutput, description=f"the {idempotency.HEADER} was used for another request"),
}


def responses(ok: dict, *errors: int, **described: OpenApiResponse) -> dict:
    """`ok` ({status: body}), the common errors, and the listed ones (a kwarg `e409=` overrides one's text)."""
    result = dict(ok)
    for code in errors:
        result[code] = described.get(f"e{code}", _KNOWN[code])
    result.update(_COMMON)
    return result


def only_the_rest_api(endpoints):
    """The schema covers /api/v1/ (not the schema view, nor other DRF views of the site)."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith(API_PREFIX)]


# (operation, status) -> {link name: (target operation, {parameter: runtime expression})}.
_RUN_ID = {"run_id": "$response.body#/id"}
_SUBMISSION_ID = {"submission_id": "$response.body#/submission/id"}
_FROM_A_RUN = {
    "run": ("run_retrieve", _RUN_ID),
    "cancel": ("run_cancel", _RUN_ID),
    "logs": ("run_logs", _RUN_ID),
    "metrics": ("run_metrics", _RUN_ID),
    "share": ("submission_share", _SUBMISSION_ID),
    "rerun": ("submission_rerun", _SUBMISSION_ID),
}
_LINKS = {
    ("submission_create", "201"): _FROM_A_RUN,
    ("submission_rerun", "201"): _FROM_A_RUN,
    ("run_retrieve", "200"): _FROM_A_RUN,
    ("run_cancel", "202"): {"run": ("run_retrieve", _RUN_ID)},
}


def add_links(result, generator, request, public):
    """OpenAPI links from a created run to what can be done with it (clients and schemathesis's
    stateful tests follow them)."""
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            for code, response in operation.get("responses", {}).items():
                links = _LINKS.get((operation.get("operationId"), code))
                if links:
                    response["links"] = {
                        name: {"operationId": target, "parameters": parameters}
                        for name, (target, parameters) in links.items()
                    }
    return result


# Operations whose body is not optional (drf-spectacular cannot tell from a multipart form, or a PATCH).
_BODY_REQUIRED = {"submission_create", "submission_share"}


def strict_bodies(result, generator, request, public):
    """Request bodies as the views check them: unknown fields are refused (400), some bodies required."""
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            if operation.get("operationId") in _BODY_REQUIRED and "requestBody" in operation:
                operation["requestBody"]["required"] = True
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result
