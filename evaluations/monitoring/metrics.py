"""The Prometheus metrics of /metrics, all defined here: what processes record, and what is read from
the database and Redis at each scrape. Which is which, and why: docs/monitoring.md.

Processes record into prometheus_client's multiprocess files, one directory per process group (a
process and the children it forks, e.g. a Celery worker and its pool) under CRUCIBLE_METRICS_DIR.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
from pathlib import Path

import redis
from django.conf import settings

logger = logging.getLogger(__name__)


def _process_group_dir() -> Path:
    """This process's directory, made empty; the directories of process groups on this host whose
    leader has died are removed (the multiprocess docs' "wipe at start", per group)."""
    root = Path(settings.CRUCIBLE_METRICS_DIR)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    prefix = f"{socket.gethostname()}-"
    for path in root.glob(f"{prefix}*"):
        pid = path.name[len(prefix) :]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            shutil.rmtree(path, ignore_errors=True)
    mine = root / f"{prefix}{os.getpid()}"
    mine.mkdir(exist_ok=True, mode=0o700)  # made before a worker sets its umask
    return mine


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Chosen when this module is first imported in a process; children forked later (a worker's pool)
# inherit it, so their files sit with their parent's. Must precede the first metric value.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_process_group_dir())

from prometheus_client import Counter, Gauge, Histogram, multiprocess, values  # noqa: E402

if not getattr(values.ValueClass, "_multiprocess", False):
    # prometheus_client was imported before the variable was set: switch to multiprocess values.
    values.ValueClass = values.get_value_class()


# --- Recorded by the processes that see them ------------------------------------------------------

HTTP_REQUEST_SECONDS = Histogram(
    "crucible_http_request_duration_seconds",
    "HTTP requests answered by the web process, by route pattern (not path), method and status code.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=None,
)
WEBSOCKETS_OPEN = Gauge(
    "crucible_websocket_connections",
    "Websocket connections open now (accepted and not yet closed), by route.",
    ["route"],
    multiprocess_mode="livesum",
    registry=None,
)
WEBSOCKET_MESSAGES_DROPPED = Counter(
    "crucible_websocket_messages_dropped",
    "Live messages lost: stage=publish could not be handed to the channel layer (counted in Redis, from "
    "every host; publish_local: Redis was down too, counted by this host's processes), stage=delivery never "
    "reached a websocket (the socket filled the gap from the log store).",
    ["stage"],
    registry=None,
)
DROPPED_AT_PUBLISH, DROPPED_AT_PUBLISH_LOCAL, DROPPED_IN_DELIVERY = "publish", "publish_local", "delivery"
# Drops at publish from every process on every host, read at each scrape (a key of our own).
DROPPED_AT_PUBLISH_KEY = "crucible:metrics:messages-dropped-at-publish"

# --- Read at each scrape by evaluations/monitoring/scrape.py: (name, help), buckets -----------------
# From the database and the broker, so they hold across hosts and restarts with nothing to add up.

RUNS_FINISHED = ("crucible_runs_finished", "Runs that ended, by status and reason ('none': no reason).")
RUNS_QUEUED = ("crucible_runs_queued", "Runs waiting for a worker, as the database has them.")
OLDEST_QUEUED_AGE = ("crucible_oldest_queued_run_age_seconds", "Seconds the oldest queued run has waited (0: none).")
BROKER_QUEUE_MESSAGES = ("crucible_broker_queue_messages", "Run messages in the broker's queue (absent: no answer).")
RUNS_IN_FLIGHT = ("crucible_runs_in_flight", "Runs running now, by worker (Celery node name).")
HEARTBEAT_AGE = ("crucible_worker_heartbeat_age_seconds", "Seconds since a worker (or the reconciler) last beat.")
RUN_DURATION = ("crucible_run_duration_seconds", "Seconds from a run's claim by a worker to its end.")
RUN_QUEUE_WAIT = ("crucible_run_queue_wait_seconds", "Seconds from a run's submission to its claim by a worker.")
SANDBOX_START = (
    "crucible_sandbox_start_seconds",
    "From a worker claiming a run to its sandbox having booted (engines that report a boot time).",
)
RUN_DURATION_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
QUEUE_WAIT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
SANDBOX_START_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)


def websocket_messages_dropped(stage: str, count: int = 1) -> None:
    WEBSOCKET_MESSAGES_DROPPED.labels(stage=stage).inc(count)


def messages_dropped_at_publish(count: int) -> None:
    """Count live messages the channel layer refused, in Redis, where /metrics on any host reads them."""
    client = _redis()
    try:
        client.incrby(DROPPED_AT_PUBLISH_KEY, count)
    except redis.RedisError as exc:
        # Redis is most likely why publishing failed too: count in this process's files instead,
        # which only a /metrics on this host reads.
        logger.warning("could not count %d dropped live message(s) in Redis: %s", count, type(exc).__name__)
        websocket_messages_dropped(DROPPED_AT_PUBLISH_LOCAL, count)
    finally:
        client.close()


def messages_dropped_at_publish_counted() -> int | None:
    """The drops at publish counted in Redis so far, or None if Redis does not answer."""
    client = _redis()
    try:
        return int(client.get(DROPPED_AT_PUBLISH_KEY) or 0)
    except redis.RedisError:
        return None
    finally:
        client.close()


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


class RecordedCollector:
    """Every process group's files on this host, merged (counters and histograms add up)."""

    def collect(self):
        root = Path(settings.CRUCIBLE_METRICS_DIR)
        # Groups are made 0700: another user's (a worker running as root beside a web that does not)
        # stays out of the sum rather than failing the scrape.
        groups = [p for p in root.glob(f"{socket.gethostname()}-*") if p.is_dir() and os.access(p, os.R_OK | os.X_OK)]
        for group in groups:
            _forget_dead_processes(group)
        files = [str(f) for group in groups for f in group.glob("*.db")]
        return multiprocess.MultiProcessCollector.merge(files, accumulate=True)


_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def _forget_dead_processes(group: Path) -> None:
    """A process that died (even by SIGKILL) leaves its live gauges behind: drop them."""
    pids = {int(m.group(1)) for f in group.iterdir() if (m := _LIVE_GAUGE_FILE.match(f.name))}
    for pid in pids:
        if not _alive(pid):
            try:
                multiprocess.mark_process_dead(pid, str(group))
            except FileNotFoundError:
                pass  # another scrape got there first
