"""Publishing run events to websocket clients, from workers and from the web side.

All channel-layer traffic of a process goes through one background event loop, so the Redis
connections are reused and a publish never blocks the sandbox's output pump for long. Output
chunks are sent as soon as the previous send is done, so those that arrive meanwhile travel
together in one call;
every byte is in the log store before its message is sent (docs/live-runs.md).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction

from evaluations.logstore import RunLogWriter

logger = logging.getLogger(__name__)

# Frames stay within 64 KiB (daphne resets a connection at 1 MiB): base64 grows data by 4/3, and
# the JSON envelope needs a little room: 47 KiB of data make a frame of about 62.7 KiB.
FRAME_BYTES = 47 * 1024
SEND_TIMEOUT = 5.0
# The least time between two sends of one run's output (see RunPublisher._flusher).
SEND_INTERVAL = 0.02


def run_group(run_id: int) -> str:
    return f"run-{run_id}"


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


# Run lists of users who read other people's runs: reviewers and admins (every run), and
# teammates (runs shared with their team). selectors.run_list_groups says who joins which.
ALL_RUNS_GROUP = "runs-all"


def team_group(team_id: int) -> str:
    return f"team-{team_id}"


# Every open websocket listens here for "check again who may see what" (access_changed): access
# changes are rare admin or owner actions, so one broadcast and a query per open socket is cheap, and
# no case (a teammate of a former team, a reviewer turned researcher, ...) can be missed.
ACCESS_GROUP = "access"


def access_changed() -> None:
    """Open websockets re-read their user, token, session and run visibility, and close (or leave
    the run lists they no longer see) at once. Call on commit of the change."""
    send([(ACCESS_GROUP, {"type": "access.check"})])


def connect_access_signals() -> None:
    """Changes made outside the services (the admin's password form, `set_password` anywhere, a
    user deleted in the admin) also reach open websockets: a changed password hash ends the user's
    other sessions (websocket_user checks it), a deleted user ends everything they had open."""
    from django.contrib.auth import get_user_model
    from django.db.models import signals

    user_model = get_user_model()
    signals.pre_save.connect(_note_password_change, sender=user_model, dispatch_uid="crucible-access-password")
    signals.post_save.connect(_on_user_saved, sender=user_model, dispatch_uid="crucible-access-user-saved")
    signals.post_delete.connect(_on_user_deleted, sender=user_model, dispatch_uid="crucible-access-user-deleted")


def _note_password_change(sender, instance, update_fields=None, **kwargs) -> None:
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return  # a new user has no sockets; e.g. last_login updates name their fields
    stored = sender._default_manager.filter(pk=instance.pk).values_list("password", flat=True).first()
    instance._crucible_password_changed = stored is not None and stored != instance.password


def _on_user_saved(sender, instance, **kwargs) -> None:
    if instance.__dict__.pop("_crucible_password_changed", False):
        transaction.on_commit(access_changed)


def _on_user_deleted(sender, instance, **kwargs) -> None:
    transaction.on_commit(access_changed)


def output_message(stream: str, offset: int, data: bytes) -> dict[str, Any]:
    return {"type": "output", "stream": stream, "offset": offset, "data": base64.b64encode(data).decode()}


def output_frames(stream: str, offset: int, data: bytes) -> list[dict[str, Any]]:
    return [output_message(stream, offset + i, data[i : i + FRAME_BYTES]) for i in range(0, len(data), FRAME_BYTES)]


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
                threading.Thread(target=loop.run_forever, name="crucible-realtime", daemon=True).start()
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
    except Exception:
        logger.warning("could not publish %d live message(s)", len(messages), exc_info=True)


def status_event(payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "run.status", "payload": payload}


def publish_status(*, run_id: int, owner_id: int, payload: dict[str, Any], list_groups: Sequence[str] = ()) -> None:
    """A status change goes to the run's page, to its owner's run list, and to the other run lists
    that show it (`list_groups`: reviewers' and admins', its team's when shared)."""
    listed = status_event({"id": run_id, **payload})
    send([(run_group(run_id), status_event(payload)), *((g, listed) for g in [user_group(owner_id), *list_groups])])


class RunPublisher:
    """Stores and publishes one run's output and metric samples while it runs."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.group = run_group(run_id)
        self.store = RunLogWriter(run_id)
        self._pending: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._flusher, name=f"run-{run_id}-publisher", daemon=True)
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
        # at least SEND_INTERVAL apart and carry everything that arrived meanwhile. Every message
        # costs the websocket side more than its bytes do, so a message per line would queue up
        # under a steady stream (measured: p50 97 ms for a line every 10 ms, against 51 ms with a
        # fixed 50 ms collection delay); spacing bounds both the rate and the added delay.
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
                for frame in output_frames(item["stream"], item["offset"], bytes(item["data"])):
                    messages.append((self.group, {"type": "run.output", "payload": frame}))
            else:
                samples.append(item["sample"])
        if samples:
            messages.append((self.group, {"type": "run.metrics", "payload": {"type": "metrics", "samples": samples}}))
        send(messages)
