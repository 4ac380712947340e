"""Websocket consumers: authenticate, authorize, join a group, replay, relay. Protocol in
docs/live-runs.md. They only read; every write happens in services."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from channels.generic.websocket import AsyncJsonWebsocketConsumer, WebsocketConsumer
from django.http import Http404
from django.utils import timezone

from evaluations.api.throttling import user_action_wait
from evaluations.live import protocol
from evaluations.live.groups import ACCESS_GROUP, run_group
from evaluations.live.protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_NOT_FOUND,
    CLOSE_RATE_LIMITED,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHENTICATED,
    METRICS_PER_FRAME,
    STREAMS,
    parse_offsets,
)
from evaluations.live.selectors import run_list_groups, run_list_recent_statuses, websocket_user
from evaluations.live.sync import in_thread
from evaluations.models import TERMINAL_STATUSES, RunStatus
from evaluations.monitoring.logging import log_bind, log_context, request_id_from, username_of
from evaluations.monitoring.metrics import DROPPED_IN_DELIVERY, websocket_messages_dropped
from evaluations.runs import combined_output, logstore, selectors
from evaluations.unavailable import unavailable_service

logger = logging.getLogger(__name__)

REPLAY_READ_BYTES = 1024 * 1024
# Live output goes to a client in at most one frame per stream this often: the chunks that arrive
# meanwhile (a burst of small lines, a backlog of layer messages) are held and sent as one. A chunk
# after a quiet spell goes at once.
OUTPUT_FRAME_INTERVAL = 0.02
# Held output goes with the first chunk that arrives once the interval is over, or at the latest
# this long after the last frame: a timer at the interval itself would take the slot just before
# the next chunk of a steady stream, which would then wait a whole interval (bench/live.py).
OUTPUT_HOLD_LIMIT = 1.5 * OUTPUT_FRAME_INTERVAL
# Group memberships live in Redis and a Redis restart forgets them: every socket joins its groups
# again this often, and a run's socket catches up from the store on what it may have missed.
REJOIN_SECONDS = 5.0
_STATUS_RANK = {"queued": 0, "running": 1}  # terminal statuses rank 2
# How far back a run list's catch-up looks beyond its last pass (clock differences between hosts).
LIST_CLOCK_MARGIN_SECONDS = 30.0
LIST_SENT_KEPT = 10_000


# Chunks of one stream stored within this of each other are replayed as one frame (one time for all).
REPLAY_JOIN_SECONDS = 0.05


@dataclass
class _Replayed:
    """Replayed bytes of one stream waiting to be sent as frames, and when they were stored."""

    stream: str
    offset: int
    data: bytearray
    first: datetime | None
    started: datetime | None
    last: datetime | None = None

    def joins(self, stream: str, created: datetime | None) -> bool:
        if stream != self.stream:
            return False
        if created is None or self.last is None:
            return created is None and self.last is None
        return (created - self.last).total_seconds() < REPLAY_JOIN_SECONDS

    def seconds(self) -> float | None:
        if self.first is None or self.started is None:
            return None
        return round(max(0.0, (self.first - self.started).total_seconds()), 3)


class _AuthenticatedConsumer(AsyncJsonWebsocketConsumer):
    async def __call__(self, scope, receive, send) -> None:
        # One log scope per socket, for its whole life: an id (the handshake's X-Request-ID if
        # sane) and its user; a run's socket adds the run id.
        headers = dict(scope.get("headers", []))
        with log_context(request_id=request_id_from(headers.get(b"x-request-id")), user=username_of(scope.get("user"))):
            await super().__call__(scope, receive, send)

    async def websocket_connect(self, message) -> None:
        try:
            await super().websocket_connect(message)
        except Exception as exc:
            service = unavailable_service(exc)
            if service is None:
                raise
            # Not the HTTP 500 daphne would answer: a code that tells the client to come back.
            logger.warning("websocket closed with %s: the %s is unavailable (%s)", CLOSE_TRY_AGAIN, service, exc)
            if not getattr(self, "accepted", False):
                await self.accept()
            await self.close(code=CLOSE_TRY_AGAIN)

    async def accept(self, subprotocol=None, headers=None) -> None:
        self.accepted = True
        await super().accept(subprotocol, headers)

    async def _refuse_unless_allowed(self) -> bool:
        """Accept, then close with a code if the caller may not be here; True if refused.
        (Closing before accept would turn every refusal into the same HTTP 403.)"""
        reject = self.scope.get("crucible_reject")
        user = self.scope.get("user")
        if reject is None and (user is None or not user.is_authenticated):
            reject = CLOSE_UNAUTHENTICATED
        if reject is None:
            # A connect counts like an API request of its user (and token), so reconnecting in a
            # loop is limited like polling.
            wait = await in_thread(user_action_wait)(
                user_id=user.pk, token_id=self.scope.get("crucible_token_id"), write=False
            )
            if wait is not None:
                reject = CLOSE_RATE_LIMITED
        if reject is not None:
            await self.accept()
            await self.close(code=reject)
            return True
        return False

    async def receive_json(self, content, **kwargs) -> None:
        pass  # clients need not send anything; whatever they send is ignored

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        pass  # not even parsed: a malformed frame must not close the socket

    async def run_status(self, event) -> None:
        await self.send_json(event["payload"])

    def _groups(self) -> list[str]:
        return [ACCESS_GROUP] if getattr(self, "watching_access", False) else []

    def _keep_membership(self) -> None:
        self._keeper = asyncio.ensure_future(self._rejoin_forever())

    async def _stop_keeping_membership(self) -> None:
        keeper = getattr(self, "_keeper", None)
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _rejoin_forever(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(REJOIN_SECONDS)
            try:
                for group in self._groups():
                    await self.channel_layer.group_add(group, self.channel_name)
                await self._catch_up()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: try again next time
                if not failing:
                    logger.warning("websocket %s: could not rejoin its groups: %s", self.channel_name, exc)
                failing = True

    async def _catch_up(self) -> None:
        """Send what the socket may have missed while it was out of its groups."""

    # -- access that changes while the socket is open ------------------------------------------------

    async def _watch_access(self) -> None:
        """Join the broadcast of publisher.access_changed. Joined before access is checked, so a
        change committed after the check always reaches this socket."""
        await self.channel_layer.group_add(ACCESS_GROUP, self.channel_name)
        self.watching_access = True

    async def _unwatch_access(self) -> None:
        if getattr(self, "watching_access", False):
            await self.channel_layer.group_discard(ACCESS_GROUP, self.channel_name)

    def _fresh_user(self):
        """Who this socket acts for now (None: deactivated, token revoked, logged out)."""
        session = self.scope.get("session")
        return websocket_user(
            user_id=self.scope["user"].pk,
            token_id=self.scope.get("crucible_token_id"),
            session_key=getattr(session, "session_key", None) if session is not None else None,
        )


class RunConsumer(_AuthenticatedConsumer):
    async def connect(self) -> None:
        if await self._refuse_unless_allowed():
            return
        try:
            self.sent = parse_offsets(self.scope.get("query_string", b""))
            self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
            log_bind(run_id=self.run_id)
        except ValueError:
            await self.accept()
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        await self._watch_access()
        refusal = await in_thread(self._access_lost)()
        if refusal is not None:
            await self.accept()
            await self.close(code=refusal)  # 4404 is the same for "no such run" and "not yours"
            return
        self.group = run_group(self.run_id)
        self._sending = asyncio.Lock()  # the catch-up, held output and live output must not interleave
        # Live output accepted but not sent yet: it ends at self.sent[stream], where the store goes on.
        self._held = {stream: bytearray() for stream in STREAMS}
        self._last_frame = dict.fromkeys(STREAMS, 0.0)
        self._flush_due: dict[str, asyncio.Future | None] = dict.fromkeys(STREAMS)
        # Join first, read the store second: every byte published from now on is either in what
        # we read or in a live message (workers store before they publish), so nothing is missed.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        if not await self._replay_in_order():  # it stopped at a gap: each stream on its own
            for stream in STREAMS:
                await self._replay(stream)
        # The status is read after the replay, so a run that started meanwhile is never shown queued
        # beside its output; if it ended, run_status sends the rest of the store before the end.
        status, samples = await in_thread(self._status_and_samples)()
        await self.run_status({"payload": status})
        # Samples are stored before they are published: a live one already in what we read is
        # recognised by its time and not sent twice.
        self.metrics_until = samples[-1]["t"] if samples else -1.0
        for i in range(0, len(samples), METRICS_PER_FRAME):
            await self.send_json(protocol.metrics_message(samples[i : i + METRICS_PER_FRAME]))
        self._keep_membership()
        logger.info("websocket following run %s (status %s)", self.run_id, status["status"])

    async def disconnect(self, code) -> None:
        await self._stop_keeping_membership()
        for due in getattr(self, "_flush_due", {}).values():
            if due is not None:
                due.cancel()
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)
            logger.info("websocket of run %s closed (%s)", self.run_id, code)
        await self._unwatch_access()

    def _groups(self) -> list[str]:
        return [*super()._groups(), self.group]

    async def run_status(self, event) -> None:
        # Status messages come from several processes and may arrive out of order (a queue-position
        # update sent before the run started can land after it ended): never go backwards.
        status = event["payload"]["status"]
        rank = _STATUS_RANK.get(status, 2)
        if getattr(self, "ended", False) or rank < getattr(self, "status_rank", 0):
            return
        self.status_rank = rank
        self.ended = status in TERMINAL_STATUSES
        async with self._sending:
            # All of an ended run's output is stored before its end is published, but live messages
            # can be late or lost under load: send what the client lacks first, so the end comes last.
            # (Held output was printed before this status was sent: it goes first either way.)
            lacking = self.ended and await in_thread(combined_output.chunks_after)(self.run, dict(self.sent), 1)
            for stream in STREAMS:
                await (self._replay(stream) if lacking else self._flush(stream))
            await self.send_json(event["payload"])

    async def _catch_up(self) -> None:
        if getattr(self, "ended", False):
            return
        # Every open socket does this every few seconds: one small query, and the store only
        # once the run has started (a queued run has no output yet).
        status = await in_thread(selectors.run_status_of)(run_id=self.run_id)
        if status is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        if status != RunStatus.QUEUED:
            async with self._sending:
                for stream in STREAMS:
                    await self._replay(stream)
                # Only the samples it lacks: a query on (run, last_t), small however long the run.
                samples = await in_thread(logstore.metrics_read)(self.run, after=self.metrics_until)
                fresh = [s for s in samples if s["t"] > self.metrics_until]
                if fresh:
                    self.metrics_until = fresh[-1]["t"]
                for i in range(0, len(fresh), METRICS_PER_FRAME):
                    await self.send_json(protocol.metrics_message(fresh[i : i + METRICS_PER_FRAME]))
        if status in TERMINAL_STATUSES and not getattr(self, "ended", False):
            try:
                payload = await in_thread(self._status_payload)()
            except Http404:
                await self.close(code=CLOSE_NOT_FOUND)
                return
            await self.run_status({"payload": payload})

    def _access_lost(self) -> int | None:
        """The close code if this socket's user may no longer follow the run, else None."""
        user = self._fresh_user()
        if user is None:
            return CLOSE_UNAUTHENTICATED
        try:
            self.run = selectors.run_get_visible(user=user, run_id=self.run_id)
        except Http404:
            return CLOSE_NOT_FOUND
        self.scope["user"] = user
        log_bind(user=user.get_username())
        return None

    async def access_check(self, event) -> None:
        refusal = await in_thread(self._access_lost)()
        if refusal is not None:
            await self.close(code=refusal)

    def _status_payload(self) -> dict:
        run = selectors.run_get_visible(user=self.scope["user"], run_id=self.run_id)
        return selectors.run_status_payload(run=run)

    def _status_and_samples(self) -> tuple[dict, list[dict]]:
        return self._status_payload(), logstore.metrics_read(self.run)

    async def _replay_in_order(self) -> bool:
        """Both streams from the client's offsets in the order they were stored, so a page opened on
        a run shows stdout and stderr lines interleaved as they were written, each frame with `t`, the
        seconds after the run started that its first byte was stored. Chunks of one stream stored
        close together go in one frame. False if it stopped at anything unexpected (a gap)."""
        started = getattr(self.run, "started_at", None)
        while True:
            rows = await in_thread(combined_output.chunks_after)(self.run, dict(self.sent))
            if not rows:
                return True
            pending: _Replayed | None = None
            for stream, offset, data, created in rows:
                have = self.sent[stream] + (len(pending.data) if pending and pending.stream == stream else 0)
                if offset > have:
                    break
                if pending is not None and not pending.joins(stream, created):
                    await self._send_replayed(pending)
                    pending = None
                    have = self.sent[stream]
                if pending is None:
                    pending = _Replayed(stream, have, bytearray(), created, started)
                pending.data.extend(data[have - offset :])
                pending.last = created
            else:
                if pending is not None:
                    await self._send_replayed(pending)
                if len(rows) < combined_output.READ_ROWS:
                    return True  # that was all the store had
                continue
            if pending is not None:
                await self._send_replayed(pending)
            return False

    async def _send_replayed(self, replayed: _Replayed) -> None:
        if not replayed.data:
            return
        t = replayed.seconds()
        for frame in protocol.output_frames(replayed.stream, replayed.offset, bytes(replayed.data)):
            if t is not None:
                frame["t"] = t
            await self.send_json(frame)
        self.sent[replayed.stream] = replayed.offset + len(replayed.data)

    async def _replay(self, stream: str, until: int | None = None) -> None:
        """Send stored bytes from what the client has up to `until` (or the end)."""
        await self._flush(stream)  # the held bytes come before what the store has after them
        while until is None or self.sent[stream] < until:
            want = REPLAY_READ_BYTES if until is None else min(REPLAY_READ_BYTES, until - self.sent[stream])
            data = await in_thread(logstore.log_read)(self.run, stream, self.sent[stream], want)
            if not data:
                return
            for frame in protocol.output_frames(stream, self.sent[stream], data):
                await self.send_json(frame)
            self.sent[stream] += len(data)

    async def run_output(self, event) -> None:
        async with self._sending:
            await self._relay_output(event)

    async def _relay_output(self, event) -> None:
        message = event["payload"]
        stream, offset = message["stream"], message["offset"]
        data = base64.b64decode(message["data"])
        have = self.sent[stream]
        if offset + len(data) <= have:
            return  # already sent by the replay
        if offset > have:
            websocket_messages_dropped(DROPPED_IN_DELIVERY)
            await self._replay(stream, until=offset)  # a dropped live message: fill from the store
            if self.sent[stream] < offset:
                return
            have = self.sent[stream]
        self._held[stream] += data[have - offset :]
        self.sent[stream] = offset + len(data)
        since = asyncio.get_running_loop().time() - self._last_frame[stream]
        if since >= OUTPUT_FRAME_INTERVAL:
            await self._flush(stream)
        elif self._flush_due[stream] is None:  # else the flush already due takes these bytes too
            self._flush_due[stream] = asyncio.ensure_future(self._flush_later(stream, OUTPUT_HOLD_LIMIT - since))

    async def _flush_later(self, stream: str, wait: float) -> None:
        await asyncio.sleep(wait)
        async with self._sending:
            await self._flush(stream)

    async def _flush(self, stream: str) -> None:
        """Send the held output of `stream` (in frames of at most FRAME_BYTES); hold `_sending`."""
        held = self._held[stream]
        if not held:
            return
        self._held[stream] = bytearray()
        due, self._flush_due[stream] = self._flush_due[stream], None
        if due is not None and due is not asyncio.current_task():
            due.cancel()  # these bytes go now
        for frame in protocol.output_frames(stream, self.sent[stream] - len(held), bytes(held)):
            await self.send_json(frame)
        self._last_frame[stream] = asyncio.get_running_loop().time()

    async def run_metrics(self, event) -> None:
        fresh = [s for s in event["payload"]["samples"] if s["t"] > getattr(self, "metrics_until", -1.0)]
        if fresh:
            self.metrics_until = fresh[-1]["t"]
            await self.send_json({**event["payload"], "samples": fresh})


class RunListConsumer(_AuthenticatedConsumer):
    async def connect(self) -> None:
        if await self._refuse_unless_allowed():
            return
        await self._watch_access()
        self.list_groups = []
        user = await in_thread(self._fresh_user)()
        if user is None:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self._follow(user)
        await self.accept()
        # Live messages can be lost (a Redis restart, a backlog past the layer's expiry): every
        # REJOIN_SECONDS the socket sends the statuses it has not sent of recently changed runs.
        self.list_sent: dict[int, str] = {}
        self.list_since = timezone.now() - timedelta(seconds=LIST_CLOCK_MARGIN_SECONDS)
        self._keep_membership()

    def _groups(self) -> list[str]:
        return [*super()._groups(), *self.list_groups]

    async def run_status(self, event) -> None:
        # The catch-up and the live message of one change both come: send it once, never backwards.
        payload = event["payload"]
        sent = self.list_sent.get(payload["id"])
        if sent is not None and _STATUS_RANK.get(payload["status"], 2) <= _STATUS_RANK.get(sent, 2):
            return
        self.list_sent[payload["id"]] = payload["status"]
        await self.send_json(payload)

    async def _catch_up(self) -> None:
        user = self.scope["user"]
        checked = timezone.now()
        statuses = await in_thread(run_list_recent_statuses)(user=user, since=self.list_since)
        # Workers on other hosts stamp finished_at by their clocks: look back a little further.
        self.list_since = checked - timedelta(seconds=LIST_CLOCK_MARGIN_SECONDS)
        if len(self.list_sent) > LIST_SENT_KEPT:
            self.list_sent.clear()  # at worst, a later pass sends a status again, which pages ignore
        for payload in reversed(statuses):  # oldest first, as they happened
            if self.list_sent.get(payload["id"]) != payload["status"]:
                await self.run_status({"payload": payload})

    async def disconnect(self, code) -> None:
        await self._stop_keeping_membership()
        for group in getattr(self, "list_groups", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        await self._unwatch_access()

    async def _follow(self, user) -> None:
        """Join the run-list groups `user` may see now, and leave those they no longer may."""
        groups = await in_thread(run_list_groups)(user=user)
        for group in set(self.list_groups) - set(groups):
            await self.channel_layer.group_discard(group, self.channel_name)
        for group in set(groups) - set(self.list_groups):
            await self.channel_layer.group_add(group, self.channel_name)
        self.list_groups = groups

    async def access_check(self, event) -> None:
        user = await in_thread(self._fresh_user)()
        if user is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self._follow(user)  # a new role or team changes which runs the list shows


class RejectConsumer(WebsocketConsumer):
    """Catch-all: closes unknown websocket paths with 4404 instead of a daphne 500."""

    def connect(self) -> None:
        self.accept()
        self.close(code=CLOSE_NOT_FOUND)
