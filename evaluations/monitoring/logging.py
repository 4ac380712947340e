"""Structured logs: one JSON object per line in production, readable lines in development.

What a line is about (run_id, user, request_id, task_id) lives in a context variable: requests,
Celery tasks, websockets and the reconciler open a scope (`log_context`) and add to it
(`log_bind`); `ContextFilter` copies it onto every record, so log calls need not repeat it.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import logging.config
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.utils.functional import LazyObject, empty

CONTEXT_FIELDS = ("run_id", "user", "request_id", "task_id")
REQUEST_ID_HEADER = "X-Request-ID"
# A request id from a client or proxy is kept only if it is a short, plain token (it is echoed in a
# response header and written to every line); anything else gets a new id.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_REQUEST = "_request"  # a scope's HTTP request, whose user is read once the request has resolved it

_scope: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("crucible_log_scope", default=None)

request_logger = logging.getLogger("crucible.request")
access_logger = logging.getLogger("daphne.access")


def configure_logging(config: dict[str, Any]) -> None:
    """settings.LOGGING_CONFIG: the LOGGING dict, and Python's warnings as log lines rather than raw
    text on stderr (which would break a JSON log)."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)


# -- the context ---------------------------------------------------------------------------------------


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """A scope (a request, a task, a websocket, one run in a loop): the enclosing scope's fields
    plus these, on every line logged inside it. None values are left out."""
    token = _scope.set({**(_scope.get() or {}), **_given(fields)})
    try:
        yield
    finally:
        _scope.reset(token)


def log_bind(**fields: Any) -> None:
    """Add fields to the innermost scope for the rest of it (a run id once the run exists, the user
    once known). Outside any scope it does nothing, so nothing leaks into unrelated lines."""
    scope = _scope.get()
    if scope is not None:
        scope.update(_given(fields))


def log_fields() -> dict[str, Any]:
    """The context fields of the current scope, as the filter adds them."""
    scope = _scope.get()
    if not scope:
        return {}
    fields = {key: value for key, value in scope.items() if key in CONTEXT_FIELDS}
    if "user" not in fields and _REQUEST in scope:
        user = username_of(getattr(scope[_REQUEST], "__dict__", {}).get("user"))
        if user is not None:
            fields["user"] = user
    return fields


def in_log_context(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, to run in a new thread with this thread's scope (a thread starts with an empty one)."""
    return functools.partial(contextvars.copy_context().run, fn)


def username_of(user: Any) -> str | None:
    """A user's name for the logs, or None (anonymous, or not looked up yet: a log call never
    queries the database, which async code may not do anyway)."""
    if user is None:
        return None
    if issubclass(type(user), LazyObject) and user._wrapped is empty:
        return None
    if not getattr(user, "is_authenticated", False):
        return None
    return user.get_username()


def request_id_from(value: str | bytes | None) -> str:
    """The caller's request id if it is a sane token, else a new one."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def _given(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


# -- records -------------------------------------------------------------------------------------------


class ContextFilter(logging.Filter):
    """Adds the scope's fields to each record (fields given with `extra=` win). Celery's own lines
    from a worker's main process ("Task ... received") get the task id, and the run id it names."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in log_fields().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        if getattr(record, "task_id", None) is None and record.name.startswith("celery"):
            args = record.args
            if isinstance(args, dict) and isinstance(args.get("id"), str):
                from evaluations.runs.broker import run_id_of

                record.task_id = args["id"]
                if getattr(record, "run_id", None) is None:
                    record.run_id = run_id_of(args["id"])
        return True


# Attributes every LogRecord has: anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """Plain values passed with `extra=` (objects such as Django's `request` are left out)."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRIBUTES
        and key not in CONTEXT_FIELDS
        and not key.startswith("_")
        and (value is None or isinstance(value, str | int | float | bool))
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, the context fields
    that are known, plain `extra=` values, pid, and the traceback as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, tz=UTC)
        line: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        for key, value in _extras(record).items():
            line.setdefault(key, value)
        line["pid"] = record.process
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger> <message> [run_id=… user=… request_id=…]` for a person."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(
            f"{key}={getattr(record, key)}" for key in CONTEXT_FIELDS if getattr(record, key, None) is not None
        )
        if not context:
            return text
        first, newline, rest = text.partition("\n")  # after the message, before a traceback
        return f"{first} [{context}]{newline}{rest}"


# -- HTTP requests ---------------------------------------------------------------------------------------


class RequestLogMiddleware:
    """Each request's scope: its id (X-Request-ID if sane, else new; echoed in the response), its
    user once resolved, the run id of /runs/<run_id>/ URLs; and one line per request when it ends."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
            self.process_view = self._process_view_async  # no thread hop for a dict update

    def __call__(self, request):
        if self.is_async:
            return self._call_async(request)
        started, request_id = time.monotonic(), request_id_from(request.headers.get(REQUEST_ID_HEADER))
        with log_context(request_id=request_id, **{_REQUEST: request}):
            return self._finish(request, self.get_response(request), request_id, started)

    async def _call_async(self, request):
        started, request_id = time.monotonic(), request_id_from(request.headers.get(REQUEST_ID_HEADER))
        with log_context(request_id=request_id, **{_REQUEST: request}):
            return self._finish(request, await self.get_response(request), request_id, started)

    def process_view(self, request, view_func, view_args, view_kwargs) -> None:
        run_id = view_kwargs.get("run_id")
        if isinstance(run_id, int):
            log_bind(run_id=run_id)

    async def _process_view_async(self, request, view_func, view_args, view_kwargs) -> None:
        self.process_view(request, view_func, view_args, view_kwargs)

    def _finish(self, request, response, request_id: str, started: float):
        response[REQUEST_ID_HEADER] = request_id
        # The path only: a query string is the caller's business and may carry anything.
        request_logger.info(
            "%s %s %s",
            request.method,
            request.path[:300],
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path[:300],
                "status": response.status_code,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return response


# -- daphne ------------------------------------------------------------------------------------------------


def daphne_access_log_through_logging() -> None:
    """daphne's command line writes an access log straight to stdout, among our lines and in a
    format of its own: send it to the "daphne.access" logger instead, which is quiet below WARNING
    like the rest of daphne (RequestLogMiddleware logs each request, the consumers each run's
    socket). Call while daphne imports the application; an --access-log FILE is left alone."""
    cli = sys.modules.get("daphne.cli")
    if cli is None or getattr(cli.AccessLogGenerator, "through_logging", False):
        return

    class AccessLog(cli.AccessLogGenerator):
        through_logging = True

        def write_entry(self, host, date, request, status=None, length=None, ident=None, user=None) -> None:
            if self.stream is not sys.stdout:
                super().write_entry(host, date, request, status, length, ident, user)
                return
            access_logger.info('%s "%s" %s %s', host, request, status or "-", length or "-")

    cli.AccessLogGenerator = AccessLog


# -- Celery ------------------------------------------------------------------------------------------------

_task_scopes: dict[str, contextvars.Token] = {}


def _task_started(task_id: str | None = None, **kwargs: Any) -> None:
    # Runs in the thread that runs the task, just before it: the scope lasts until it ended.
    if task_id:
        _task_scopes[task_id] = _scope.set({"task_id": task_id})


def _task_ended(task_id: str | None = None, **kwargs: Any) -> None:
    token = _task_scopes.pop(task_id or "", None)
    if token is not None:
        try:
            _scope.reset(token)
        except ValueError:  # ended in another context than it started in (not with prefork)
            _scope.set(None)


def _terminal_output_as_log_lines(sender: Any = None, instance: Any = None, **kwargs: Any) -> None:
    # Celery writes its banner and its signal notices ("worker: Warm shutdown") straight to the
    # terminal; in a JSON log they would be the only lines that are not JSON.
    from celery.apps import worker
    from django.conf import settings

    if getattr(settings, "CRUCIBLE_LOG_FORMAT", "text") != "json" or instance is None:
        return
    instance.quiet = True
    notices = logging.getLogger("celery.apps.worker")
    worker.safe_say = lambda msg, f=None: notices.warning("%s", str(msg).strip())


def connect_worker_signals() -> None:
    """In a Celery worker: a scope per task (its task id); with JSON logs, Celery's terminal
    output as log lines."""
    from celery import signals

    signals.task_prerun.connect(_task_started, dispatch_uid="crucible-log-task-started", weak=False)
    signals.task_postrun.connect(_task_ended, dispatch_uid="crucible-log-task-ended", weak=False)
    signals.celeryd_after_setup.connect(
        _terminal_output_as_log_lines, dispatch_uid="crucible-log-terminal-output", weak=False
    )
