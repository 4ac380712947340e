"""Publishing run events to websocket clients, from workers and from the web side.

One background event loop per process carries all channel-layer sends; a run's output is stored
and sent from a thread of its own, so neither blocks the sandbox's output pump. Every byte is in
the log store before its message is sent (docs/live-runs.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from channels.layers import get_channel_layer
from django.db import DatabaseError, connection

from evaluations.live import protocol
from evaluations.live.groups import ACCESS_GROUP, run_group, user_group
from evaluations.monitoring.logging import in_log_context
from evaluations.monitoring.metrics import messages_dropped_at_publish
from evaluations.runs.logstore import RunLogWriter, StoredRun, store_may_recover

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 5.0
# The least time between two INSERTs of one run's output (unless STORE_BYTES are pending), and
# between two publishes of what was stored (see RunPublisher._flusher).
STORE_INTERVAL = 0.005
STORE_BYTES = 64 * 1024
SEND_INTERVAL = 0.005
# The longest close() waits for the last batches to be stored and sent (a database that is away
# meanwhile is retried: the output waits in memory, bounded by the run's caps).
CLOSE_TIMEOUT = 30.0
RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)


def access_changed() -> None:
    """Open websockets re-read their user, token, session and run visibility, and close (or leave
    the run lists they no longer see) at once. Call on commit of the change."""
    send([(ACCESS_GROUP, protocol.ACCESS_CHECK_EVENT)])


class _Loop:
    """One event loop thread per process for channel-layer sends."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _pid: int | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        import os

        with cls._lock:
            # A forked Celery child must not use its parent's loop thread (it does not exist here).
            if cls._loop is None or cls._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="crucible-live-publisher", daemon=True).start()
                cls._loop, cls._pid = loop, os.getpid()
            return cls._loop


def send(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Send (group, event) pairs in order, in one hop to the loop. Failures are logged, not raised:
    live delivery is best effort, the log store is the record."""
    if not messages:
        return
    layer = get_channel_layer()
    if layer is None:
        return

    async def _send() -> None:
        for group, event in messages:
            await layer.group_send(group, event)

    try:
        asyncio.run_coroutine_threadsafe(_send(), _Loop.get()).result(timeout=SEND_TIMEOUT)
    except Exception as exc:  # e.g. Redis restarting: pages catch up from the log store on reconnect
        messages_dropped_at_publish(len(messages))  # in Redis, for /metrics on every host
        logger.warning("could not publish %d live message(s): %s: %s", len(messages), type(exc).__name__, exc)


def publish_status(*, run_id: int, owner_id: int, payload: dict[str, Any], list_groups: Sequence[str] = ()) -> None:
    """A status change goes to the run's page, to its owner's run list, and to the other run lists
    that show it (`list_groups`: reviewers' and admins', its team's when shared)."""
    listed = protocol.status_event({"id": run_id, **payload})
    to_lists = [(group, listed) for group in [user_group(owner_id), *list_groups]]
    send([(run_group(run_id), protocol.status_event(payload)), *to_lists])


class RunPublisher:
    """Stores and publishes one run's output and metric samples while it runs.

    The pump's callbacks only queue; one thread per run stores what is pending in one transaction
    (logstore.RunLogWriter.store), then publishes it. While the database is unreachable the batch is
    kept and stored again, until close() gives up; a failure that will not pass (the store is full,
    rows refused) is handed to `on_failure` (from that thread) and nothing more is stored or published."""

    def __init__(self, run: StoredRun, on_failure: Callable[[Exception], None] | None = None) -> None:
        self.run_id = run.pk
        self.group = run_group(run.pk)
        self.store = RunLogWriter(run)
        self.on_failure = on_failure
        self.failure: Exception | None = None
        self._pending: list[dict[str, Any]] = []
        self._pending_bytes = 0
        self._cond = threading.Condition()
        self._closed = False
        self._failures = 0  # store failures in a row that may pass
        self._retry_at = 0.0
        self._thread = threading.Thread(
            target=in_log_context(self._flusher), name=f"run-{run.pk}-publisher", daemon=True
        )
        self._thread.start()

    # Called from the sandbox's pump thread: must be quick.
    def output(self, stream: str, offset: int, data: bytes) -> None:
        with self._cond:
            if self.failure is not None:
                return
            last = self._pending[-1] if self._pending else None
            if (
                last is not None
                and last["kind"] == "output"
                and last["stream"] == stream
                and last["offset"] + len(last["data"]) == offset
            ):
                last["data"] += data  # merge adjacent chunks of a stream into one row and message
            else:
                self._pending.append({"kind": "output", "stream": stream, "offset": offset, "data": bytearray(data)})
            self._pending_bytes += len(data)
            self._cond.notify()

    def metrics(self, sample: dict[str, Any]) -> None:
        with self._cond:
            if self.failure is not None:
                return
            self._pending.append({"kind": "metrics", "sample": sample})
            self._cond.notify()

    def close(self) -> None:
        """Store and publish everything still pending, and stop; call before publishing the final
        status. Raises the store's failure if there was one (or TimeoutError if storing hangs)."""
        with self._cond:
            if not self._closed:
                self._closed = True
                self._cond.notify()
        self._thread.join(timeout=CLOSE_TIMEOUT)
        if self._thread.is_alive() and self.failure is None:
            self.failure = TimeoutError(f"storing the run's output took more than {CLOSE_TIMEOUT:g} s")
        self.store.close()
        if self.failure is not None:
            raise self.failure

    def _flusher(self) -> None:
        # Output is stored as soon as it comes, in batches at least STORE_INTERVAL apart (or
        # STORE_BYTES big), and published at most every SEND_INTERVAL: a line after a quiet spell
        # is stored and sent at once, a steady stream costs an INSERT per few ms and a message per
        # 20 ms rather than one of each per line (bench/live.py, bench/log_path.py).
        last_store = last_send = 0.0
        stored: list[tuple[str, int, bytes]] = []  # stored, not published yet
        samples: list[dict[str, Any]] = []
        try:
            while True:
                with self._cond:
                    while True:
                        now = time.monotonic()
                        closed = self._closed
                        full = self._pending_bytes >= STORE_BYTES
                        store_at = max(now if closed or full else last_store + STORE_INTERVAL, self._retry_at)
                        send_at = now if closed else last_send + SEND_INTERVAL
                        due = [t for t, waiting in ((store_at, self._pending), (send_at, stored or samples)) if waiting]
                        if (closed and not due) or (due and min(due) <= now):
                            break
                        self._cond.wait(timeout=min(due) - now if due else None)
                    batch = self._pending if self._pending and store_at <= now else []
                    if batch:
                        self._pending, self._pending_bytes = [], 0
                if batch:
                    last_store = now
                    kept = self._store(batch)
                    if kept is None:
                        return
                    stored += kept[0]
                    samples += kept[1]
                if (stored or samples) and (closed or time.monotonic() >= last_send + SEND_INTERVAL):
                    last_send = time.monotonic()
                    self._send(stored, samples)
                    stored, samples = [], []
                if closed:
                    with self._cond:
                        if not self._pending:
                            return
        finally:
            connection.close()  # this thread's own database connection

    def _store(self, batch: list[dict[str, Any]]) -> tuple[list[tuple[str, int, bytes]], list[dict]] | None:
        """Store the batch: (the output kept, the samples); None (and on_failure called) if storing failed."""
        chunks = [(i["stream"], i["offset"], bytes(i["data"])) for i in batch if i["kind"] == "output"]
        samples = [i["sample"] for i in batch if i["kind"] == "metrics"]
        if self.failure is not None:
            return None  # close() gave up on the database: what it did not wait for is not stored late
        try:
            kept = self.store.store(chunks, samples), samples
            if self._failures:
                logger.info("run %s: storing its output again after %d failure(s)", self.run_id, self._failures)
            self._failures = 0
            return kept
        except (DatabaseError, ValueError) as exc:
            if store_may_recover(exc):
                return self._retry_later(batch, exc)
            self.failure = exc
            with self._cond:
                self._closed = True  # the pump's later callbacks queue into nothing
            if self.on_failure is not None:
                self.on_failure(exc)
            return None
        finally:
            if self._failures:
                connection.close()  # a broken connection is replaced on the next query

    def _retry_later(self, batch: list[dict[str, Any]], exc: Exception) -> tuple[list, list]:
        """Put the batch back before what came meanwhile, to be stored again after a pause."""
        self._failures += 1
        if self._failures == 1 or self._failures % 20 == 0:
            logger.warning("run %s: could not store its output (%s); retrying", self.run_id, exc)
        with self._cond:
            self._pending[:0] = batch
            self._pending_bytes += sum(len(i["data"]) for i in batch if i["kind"] == "output")
            self._retry_at = time.monotonic() + RETRY_DELAYS[min(self._failures, len(RETRY_DELAYS)) - 1]
        return [], []

    def _send(self, stored: list[tuple[str, int, bytes]], samples: list[dict[str, Any]]) -> None:
        merged: list[list] = []
        for stream, offset, data in stored:  # adjacent chunks of a stream go in one message
            last = merged[-1] if merged else None
            if last is not None and last[0] == stream and last[1] + len(last[2]) == offset:
                last[2] += data
            else:
                merged.append([stream, offset, bytearray(data)])
        messages: list[tuple[str, dict[str, Any]]] = []
        for stream, offset, data in merged:
            for frame in protocol.output_frames(stream, offset, bytes(data)):
                messages.append((self.group, protocol.output_event(frame)))
        if samples:
            messages.append((self.group, protocol.metrics_event(samples)))
        send(messages)
