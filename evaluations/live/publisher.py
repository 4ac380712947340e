"""Publishing run events to websocket clients, from workers and from the web side.

One background event loop per process carries all channel-layer sends, so a publish never blocks
the sandbox's output pump for long. Every byte is in the log store before its message is sent
(docs/live-runs.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from channels.layers import get_channel_layer

from evaluations.live import protocol
from evaluations.live.groups import ACCESS_GROUP, run_group, user_group
from evaluations.runs.logstore import RunLogWriter, StoredRun

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 5.0
# The least time between two sends of one run's output (see RunPublisher._flusher).
SEND_INTERVAL = 0.02


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
        logger.warning("could not publish %d live message(s): %s: %s", len(messages), type(exc).__name__, exc)


def publish_status(*, run_id: int, owner_id: int, payload: dict[str, Any], list_groups: Sequence[str] = ()) -> None:
    """A status change goes to the run's page, to its owner's run list, and to the other run lists
    that show it (`list_groups`: reviewers' and admins', its team's when shared)."""
    listed = protocol.status_event({"id": run_id, **payload})
    to_lists = [(group, listed) for group in [user_group(owner_id), *list_groups]]
    send([(run_group(run_id), protocol.status_event(payload)), *to_lists])


class RunPublisher:
    """Stores and publishes one run's output and metric samples while it runs."""

    def __init__(self, run: StoredRun) -> None:
        self.run_id = run.pk
        self.group = run_group(run.pk)
        self.store = RunLogWriter(run)
        self._pending: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._flusher, name=f"run-{run.pk}-publisher", daemon=True)
        self._thread.start()

    # Called from the sandbox's pump thread: must be quick.
    def output(self, stream: str, offset: int, data: bytes) -> None:
        self.store.append(stream, offset, data)
        with self._cond:
            last = self._pending[-1] if self._pending else None
            if (
                last is not None
                and last["kind"] == "output"
                and last["stream"] == stream
                and last["offset"] + len(last["data"]) == offset
            ):
                last["data"] += data  # merge adjacent chunks of a stream into one message
            else:
                self._pending.append({"kind": "output", "stream": stream, "offset": offset, "data": bytearray(data)})
            self._cond.notify()

    def metrics(self, sample: dict[str, Any]) -> None:
        self.store.append_metrics(sample)
        with self._cond:
            self._pending.append({"kind": "metrics", "sample": sample})
            self._cond.notify()

    def close(self) -> None:
        """Flush everything still pending and stop; call before publishing the final status."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=SEND_TIMEOUT * 2)
        self.store.close()

    def _flusher(self) -> None:
        # A line after a quiet spell goes out at once; while output keeps coming, sends are spaced
        # at least SEND_INTERVAL apart and carry everything that arrived meanwhile: a message per
        # line would queue up on the websocket side under a steady stream (bench/live.py).
        last_send = 0.0
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                wait = last_send + SEND_INTERVAL - time.monotonic()
                if wait > 0 and not self._closed:
                    self._cond.wait(timeout=wait)  # close() cuts the wait short
                batch, self._pending = self._pending, []
                closed = self._closed
            last_send = time.monotonic()
            self._send(batch)
            if closed:
                with self._cond:
                    batch, self._pending = self._pending, []
                self._send(batch)
                return

    def _send(self, batch: list[dict[str, Any]]) -> None:
        messages: list[tuple[str, dict[str, Any]]] = []
        samples = []
        for item in batch:
            if item["kind"] == "output":
                for frame in protocol.output_frames(item["stream"], item["offset"], bytes(item["data"])):
                    messages.append((self.group, protocol.output_event(frame)))
            else:
                samples.append(item["sample"])
        if samples:
            messages.append((self.group, protocol.metrics_event(samples)))
        send(messages)
