"""What the client raises: every failure is a CrucibleError with a sentence a person can act on."""

from __future__ import annotations

from typing import Any


class CrucibleError(Exception):
    """Base class: anything the client could not do."""


class ConfigError(CrucibleError):
    """No server URL or token configured (CRUCIBLE_URL / CRUCIBLE_TOKEN, or `crucible login`)."""


class ConnectionFailed(CrucibleError):
    """The server could not be reached (or the live connection could not be restored)."""


class ApiError(CrucibleError):
    """The server answered with an error status; `body` is its JSON (or None)."""

    def __init__(self, status_code: int, message: str, body: Any = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.retry_after = retry_after


class Unauthorized(ApiError):
    """401: no token, or one that is unknown, revoked or expired."""


class NotFound(ApiError):
    """404: no such run, or one this token's user may not see (the server does not say which)."""


class InvalidRequest(ApiError):
    """400/413/415/422: the request was refused as it stands; the message names the field."""


class Conflict(ApiError):
    """409: e.g. cancelling a run that has ended."""


class Gone(ApiError):
    """410: the run's output expired (the server's retention)."""


class RateLimited(ApiError):
    """429: over a quota or the API's rate limit; `retry_after` when the server says."""


class Unavailable(ApiError):
    """503 or another 5xx: the server or its database cannot answer now."""


class LiveRefused(CrucibleError):
    """The websocket was closed with one of the server's refusal codes (4400, 4401, 4403, 4404)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
