"""A 503 with Retry-After, not a 500, while the database or Redis cannot be reached.

ServiceUnavailableMiddleware answers for the views (JSON under /api/, templates/503.html
elsewhere); the API's exception handler (evaluations/api/errors.py) gives DRF views the same answer,
since DRF handles their exceptions before any middleware sees them. Only a lost, refused or
timed-out connection counts: other database errors (a constraint, a missing table) stay 500s.
"""

from __future__ import annotations

import logging
import re
import sqlite3

from django.db import connections
from django.db import utils as db_utils
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.deprecation import MiddlewareMixin
from django.utils.log import log_response
from django.views import defaults
from redis import exceptions as redis_exceptions

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
API_PREFIX = "/api/"

DATABASE, REDIS = "database", "redis"
MESSAGES = {
    DATABASE: "The database is unavailable for a moment; try again in a few seconds.",
    REDIS: "The message queue is unavailable for a moment; try again in a few seconds.",
}

# PostgreSQL SQLSTATEs of a connection refused, lost or going away: class 08 (connection exception),
# admin and crash shutdown, "cannot connect now" (starting up) and too many connections.
_PG_UNAVAILABLE_CLASS = "08"
_PG_UNAVAILABLE_CODES = frozenset({"57P01", "57P02", "57P03", "53300"})
# SQLite's ways of being unreachable; its other OperationalErrors ("no such table") are bugs.
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database file", "disk i/o error")

_CREDENTIALS = [
    (re.compile(r"(\w+://)[^\s/@]*@"), r"\1***@"),  # scheme://user:password@host
    (re.compile(r"(password\s*=\s*)\S+", re.IGNORECASE), r"\1***"),  # libpq's key=value strings
]


def unavailable_service(exc: BaseException) -> str | None:
    """DATABASE or REDIS when `exc` says that service cannot be reached now; else None."""
    if isinstance(exc, db_utils.InterfaceError):
        return DATABASE
    if isinstance(exc, db_utils.OperationalError) and _database_unreachable(exc):
        return DATABASE
    if isinstance(exc, redis_exceptions.ConnectionError | redis_exceptions.TimeoutError):
        return REDIS
    return None


def _database_unreachable(exc: db_utils.OperationalError) -> bool:
    cause = exc.__cause__  # the driver's own exception, which Django's wrapper chains
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate:
        return sqlstate.startswith(_PG_UNAVAILABLE_CLASS) or sqlstate in _PG_UNAVAILABLE_CODES
    if isinstance(cause, sqlite3.Error):
        return any(text in str(cause).lower() for text in _SQLITE_UNAVAILABLE)
    # No SQLSTATE: the driver never got an answer from a server (refused, reset, timed out, closed).
    return True


def credentials_hidden(text: str) -> str:
    """`text` with the passwords of URLs and libpq connection strings in it replaced by ***."""
    for pattern, replacement in _CREDENTIALS:
        text = pattern.sub(replacement, text)
    return text


def unavailable_body(service: str) -> dict[str, str]:
    return {"detail": MESSAGES[service], "code": "unavailable"}


def unavailable_log(request, exc: BaseException, service: str, response: HttpResponse) -> None:
    """One WARNING line: what was asked, what failed and why, without credentials or a traceback
    (logged as the response's line, so django.request does not add an ERROR for the 503)."""
    if service == DATABASE:
        _drop_dead_pooled_connections()
    reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    for pattern, replacement in _CREDENTIALS:
        reason = pattern.sub(replacement, reason)
    log_response(
        "%s %s answered 503: the %s is unreachable (%s: %s)",
        request.method,
        request.path,
        service,
        type(exc).__name__,
        reason,
        response=response,
        request=request,
        logger=logger,
        level="warning",
    )


def _drop_dead_pooled_connections() -> None:
    """After a database restart every idle pooled connection is dead, and the pool finds that out one
    borrow at a time with a growing pause in between: check them all now, so the next request is fine."""
    for conn in connections.all(initialized_only=True):
        pool = getattr(conn, "pool", None)
        if pool is not None:
            try:
                pool.check()
            except Exception as exc:  # best effort: the next borrow checks again
                logger.warning("could not check the database connection pool: %s", exc)


def unavailable_response(request, service: str) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        response: HttpResponse = JsonResponse(unavailable_body(service), status=503)
    else:
        # No request and so no context processors: they would ask the database and the session.
        response = HttpResponse(render_to_string("503.html", {"message": MESSAGES[service]}), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class ServiceUnavailableMiddleware(MiddlewareMixin):
    def process_exception(self, request, exception):
        service = unavailable_service(exception)
        if service is None:
            return None
        response = unavailable_response(request, service)
        unavailable_log(request, exception, service, response)
        return response


def _or_unavailable(handler):
    """An error page's view that answers the 503 page if rendering it needs a service that is down
    (a 404 or 403 page reads the session and the user, which live in the database)."""

    def view(request, exception=None):
        try:
            return handler(request, exception)
        except Exception as exc:
            service = unavailable_service(exc)
            if service is None:
                raise
            response = unavailable_response(request, service)
            unavailable_log(request, exc, service, response)
            return response

    return view


page_not_found = _or_unavailable(defaults.page_not_found)
permission_denied = _or_unavailable(defaults.permission_denied)
