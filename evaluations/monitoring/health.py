"""Readiness: the checks behind /readyz and `manage.py doctor` (README, "Health checks").

Each check runs in a thread of its own and the caller waits at most CHECK_TIMEOUT_SECONDS, so an
answer comes even while PostgreSQL or Redis hangs; callers at the same time share one run of a check,
and a check still hanging is joined rather than started again, so probes cannot pile up connections.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Count, Max
from django.utils import timezone
from redis.backoff import NoBackoff
from redis.retry import Retry

from evaluations.models import WorkerHeartbeat
from evaluations.runs.selectors import WORKER_PROBLEM_SHOWN_SECONDS, WORKER_STALE_SECONDS
from evaluations.unavailable import credentials_hidden

CHECK_TIMEOUT_SECONDS = 2.0
DATABASE, WORKERS, SANDBOX = "database", "workers", "sandbox"
REDIS_BROKER, REDIS_CHANNEL_LAYER, REDIS_CACHE = "redis_broker", "redis_channel_layer", "redis_cache"

# What an operator does about a failing check (`manage.py doctor` prints it next to the failure).
HINTS = {
    DATABASE: "check that the database server runs and CRUCIBLE_DATABASE_URL points at it; then `manage.py migrate`",
    REDIS_BROKER: 'check that Redis runs at CRUCIBLE_REDIS_URL (`redis-cli -u "$CRUCIBLE_REDIS_URL" ping`)',
    REDIS_CHANNEL_LAYER: "check that Redis runs at CRUCIBLE_REDIS_URL: live output needs it",
    REDIS_CACHE: "check that Redis runs at CRUCIBLE_REDIS_URL: the API's rate limits need it",
    WORKERS: "start a worker (`celery -A crucible_site worker -Q runs`, or `make run`); /ops/ lists the workers",
    SANDBOX: 'on the worker\'s host, `manage.py doctor` says what is missing (README, "The sandbox"); '
    "then start the worker again",
}


def hint_for(name: str) -> str:
    """HINTS of a check (a second Redis host's check, "redis_cache_2", has its first's)."""
    return HINTS.get(name) or HINTS.get(name.rsplit("_", 1)[0], "")


# Words of a driver's error message that say why without naming a host, a user or a database.
_REASONS = (
    ("connection refused", "connection refused"),
    ("timed out", "timed out"),
    ("timeout", "timed out"),
    ("authentication failed", "authentication failed"),
    ("wrongpass", "authentication failed"),
    ("noauth", "authentication required"),
    ("does not exist", "the database or role does not exist"),
    ("too many connections", "too many connections"),
    ("too many clients", "too many connections"),
    ("starting up", "the server is starting up"),
    ("shutting down", "the server is shutting down"),
    ("no route to host", "no route to host"),
    ("name or service not known", "the host name does not resolve"),
    ("name resolution", "the host name does not resolve"),
    ("connection reset", "connection reset"),
    ("no such table", "tables are missing (`manage.py migrate`)"),
    ("is locked", "the database is locked"),
    ("closed", "the connection was closed"),
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    duration_ms: float

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "duration_ms": round(self.duration_ms, 1)}


class CheckFailed(Exception):
    """A check's own verdict that something is wrong; its message is the detail."""


@dataclass
class _Group:
    """Checks run one after the other in one thread (the later ones need what the first one reaches)."""

    key: str  # which target: callers share a run only for the same one
    names: tuple[str, ...]
    run: Callable[[_Flight], None]


@dataclass
class _Flight:
    """One run of a group: its results as each check ends, and when each began."""

    done: threading.Event = field(default_factory=threading.Event)
    results: dict[str, CheckResult] = field(default_factory=dict)
    began: dict[str, float] = field(default_factory=dict)

    def check(self, name: str, probe: Callable[[], str]) -> bool:
        """Run `probe` (it returns the detail, or raises); record and return whether it passed."""
        self.began[name] = began = time.monotonic()
        try:
            ok, detail = True, probe()
        except CheckFailed as exc:
            ok, detail = False, str(exc)
        except Exception as exc:
            ok, detail = False, failure_reason(exc)
        self.results[name] = CheckResult(name, ok, detail, (time.monotonic() - began) * 1000)
        return ok

    def skip(self, names: tuple[str, ...], why: str) -> None:
        for name in names:
            self.results[name] = CheckResult(name, False, why, 0.0)


_flights: dict[str, _Flight] = {}
_flights_lock = threading.Lock()


def readiness_checks(*, timeout: float = CHECK_TIMEOUT_SECONDS) -> list[CheckResult]:
    """Every readiness check's result, within about `timeout` seconds whatever hangs."""
    deadline = time.monotonic() + timeout
    flights = [(group, _flight_join(group)) for group in _groups(timeout)]
    for _group, flight in flights:
        flight.done.wait(max(0.0, deadline - time.monotonic()))
    results = [result for group, flight in flights for result in _results_by_now(group, flight, timeout)]
    # What the processes need first, then what the workers say (read from the database).
    return sorted(results, key=lambda result: result.name in (WORKERS, SANDBOX))


def readiness_report(results: list[CheckResult]) -> dict[str, Any]:
    """The body of /readyz."""
    failing = [r.name for r in results if not r.ok]
    return {
        "status": "unavailable" if failing else "ok",
        "failing": failing,
        "checks": [r.as_json() for r in results],
    }


def failure_reason(exc: BaseException) -> str:
    """Why a connection or query failed, in words that reveal no host, user, password or database name."""
    text = " ".join(str(e).lower() for e in (exc, exc.__cause__) if e is not None)
    reason = next((said for words, said in _REASONS if words in text), "")
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def _flight_join(group: _Group) -> _Flight:
    with _flights_lock:
        flight = _flights.get(group.key)
        if flight is None or flight.done.is_set():
            flight = _flights[group.key] = _Flight()
            name = f"crucible-health-{group.names[0]}"
            threading.Thread(target=_fly, args=(group, flight), name=name, daemon=True).start()
    return flight


def _fly(group: _Group, flight: _Flight) -> None:
    try:
        group.run(flight)
    except Exception as exc:  # outside any one check (making or closing its connection)
        flight.skip(tuple(n for n in group.names if n not in flight.results), failure_reason(exc))
    finally:
        flight.done.set()


def _results_by_now(group: _Group, flight: _Flight, timeout: float) -> list[CheckResult]:
    now = time.monotonic()
    results = []
    for name in group.names:
        result = flight.results.get(name)
        if result is None and name in flight.began:
            waited = now - flight.began[name]
            detail = f"no answer within {timeout:g} s"
            if waited > timeout + 1:  # joined a run begun by an earlier call, still hanging
                detail = f"no answer for {waited:.0f} s"
            result = CheckResult(name, False, detail, waited * 1000)
        elif result is None:
            hanging = next((n for n in group.names if n in flight.began and n not in flight.results), group.names[0])
            result = CheckResult(name, False, f"not checked: the {hanging} check has not answered", 0.0)
        results.append(result)
    return results


def _groups(timeout: float) -> list[_Group]:
    groups = [_database_group(timeout)]
    for name, url in _redis_urls():
        groups.append(_Group(f"{name}:{url}", (name,), _redis_run(name, url, timeout)))
    return groups


# -- the database, and what the workers wrote in it ---------------------------------------------------


def _database_group(timeout: float) -> _Group:
    # A connection of the check's own, made from the caller's settings: the caller's thread may be
    # hanging on its own, and a connection can be given a connect timeout only when it is made.
    conn = connections[DEFAULT_DB_ALIAS]
    settings_dict = dict(conn.settings_dict)
    options = dict(settings_dict.get("OPTIONS") or {})
    if conn.vendor == "postgresql":
        options["connect_timeout"] = math.ceil(timeout) + 1  # the caller stops waiting first
    elif conn.vendor == "sqlite":
        options["timeout"] = timeout + 1  # how long to wait for a lock
    settings_dict["OPTIONS"] = options
    make_connection = type(conn)
    key = ":".join(str(settings_dict.get(part, "")) for part in ("ENGINE", "HOST", "PORT", "NAME"))

    def run(flight: _Flight) -> None:
        own = make_connection(settings_dict, DEFAULT_DB_ALIAS)
        connections[DEFAULT_DB_ALIAS] = own  # for this thread only: connections are per thread
        try:
            if flight.check(DATABASE, lambda: _database_answers(own)):
                now = timezone.now()
                flight.check(WORKERS, lambda: _workers_alive(now))
                flight.check(SANDBOX, lambda: _sandbox_as_workers_found_it(now))
            else:
                flight.skip((WORKERS, SANDBOX), "not checked: the database did not answer")
        finally:
            own.close()

    return _Group(key, (DATABASE, WORKERS, SANDBOX), run)


def _database_answers(conn) -> str:
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return f"{conn.vendor} answers"


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def _workers_alive(now) -> str:
    workers = WorkerHeartbeat.objects.filter(kind=WorkerHeartbeat.Kind.WORKER)
    alive = workers.filter(problem="", last_seen__gte=now - timedelta(seconds=WORKER_STALE_SECONDS))
    seen = alive.aggregate(n=Count("id"), newest=Max("last_seen"))
    if seen["n"]:
        return f"{seen['n']} worker(s) taking runs; the latest heartbeat {_ago((now - seen['newest']).total_seconds())}"
    last = workers.order_by("-last_seen").first()
    why = f"no worker heartbeat in the last {WORKER_STALE_SECONDS:g} s"
    if last is None:
        raise CheckFailed(f"{why}: no worker has ever started")
    said = {"": "", "stopped": ", when it stopped"}.get(last.problem, ", when it refused to start")
    raise CheckFailed(f"{why}: the last came {_ago((now - last.last_seen).total_seconds())}{said}")


def _sandbox_as_workers_found_it(now) -> str:
    # Each worker checks the sandbox runtime when it starts and, if it cannot start sandboxes, says
    # why in its heartbeat's `problem` and exits (evaluations/runs/worker.py): read that, never runsc.
    recent = WorkerHeartbeat.objects.filter(
        kind=WorkerHeartbeat.Kind.WORKER, last_seen__gte=now - timedelta(seconds=WORKER_PROBLEM_SHOWN_SECONDS)
    )
    refused = list(recent.exclude(problem__in=["", "stopped"]).order_by("-last_seen")[:1])
    if refused:
        count = recent.exclude(problem__in=["", "stopped"]).count()
        problem = credentials_hidden(refused[0].problem)[:300]
        seen = _ago((now - refused[0].last_seen).total_seconds())
        raise CheckFailed(f"{count} worker(s) cannot start sandboxes; the latest said, {seen}: {problem}")
    passed = recent.count()
    hours = WORKER_PROBLEM_SHOWN_SECONDS / 3600
    if not passed:
        raise CheckFailed(f"no worker has checked the sandbox runtime in the last {hours:g} h")
    return f"{passed} worker(s) seen in the last {hours:g} h passed their start-up check"


# -- Redis --------------------------------------------------------------------------------------------


def _redis_urls() -> list[tuple[str, str]]:
    """(check name, URL) of each Redis Crucible uses: the broker, the channel layer's hosts, the cache's
    (a second host of one gets the name with "_2", and so on)."""
    found = [(REDIS_BROKER, settings.CELERY_BROKER_URL)]
    layer = settings.CHANNEL_LAYERS.get("default", {})
    if layer.get("BACKEND", "").startswith("channels_redis."):
        for n, host in enumerate(layer.get("CONFIG", {}).get("hosts", []), start=1):
            address = host.get("address") if isinstance(host, dict) else host
            if isinstance(address, list | tuple):
                address = f"redis://{address[0]}:{address[1]}"
            found.append((REDIS_CHANNEL_LAYER + (f"_{n}" if n > 1 else ""), str(address)))
    cache = settings.CACHES.get("default", {})
    if "redis" in cache.get("BACKEND", "").lower():
        locations = cache.get("LOCATION", [])
        for n, location in enumerate([locations] if isinstance(locations, str) else locations, start=1):
            found.append((REDIS_CACHE + (f"_{n}" if n > 1 else ""), location))
    return found


def _redis_run(name: str, url: str, timeout: float) -> Callable[[_Flight], None]:
    def run(flight: _Flight) -> None:
        flight.check(name, lambda: _redis_answers(url, timeout))

    return run


def _redis_answers(url: str, timeout: float) -> str:
    # No retries: redis-py's default backs off for seconds before it gives up. The caller stops
    # waiting first and says so; the socket's timeout only ends this thread soon after.
    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout + 1, socket_timeout=timeout + 1, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    finally:
        client.close()
    return "PING answered"
