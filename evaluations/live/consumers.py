"""Websocket consumers: authenticate, authorize, join a group, replay, relay. Protocol in
docs/live-runs.md. They only read; every write happens in services."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, WebsocketConsumer
from django.http import Http404

from evaluations.live import protocol
from evaluations.live.groups import ACCESS_GROUP, run_group
from evaluations.live.protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHENTICATED,
    METRICS_PER_FRAME,
    STREAMS,
    parse_offsets,
)
from evaluations.live.selectors import run_list_groups, websocket_user
from evaluations.models import TERMINAL_STATUSES
from evaluations.runs import logstore, selectors

logger = logging.getLogger(__name__)

REPLAY_READ_BYTES = 1024 * 1024
# Group memberships live in Redis and a Redis restart forgets them: every socket joins its groups
# again this often, and a run's socket catches up from the store on what it may have missed.
REJOIN_SECONDS = 5.0
_STATUS_RANK = {"queued": 0, "running": 1}  # terminal statuses rank 2


class _AuthenticatedConsumer(AsyncJsonWebsocketConsumer):
    async def _refuse_unless_allowed(self) -> bool:
        """Accept, then close with a code if the caller may not be here; True if refused.
        (Closing before accept would turn every refusal into the same HTTP 403.)"""
        reject = self.scope.get("crucible_reject")
        user = self.scope.get("user")
        if reject is None and (user is None or not user.is_authenticated):
            reject = CLOSE_UNAUTHENTICATED
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
        except ValueError:
            await self.accept()
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        await self._watch_access()
        refusal = await database_sync_to_async(self._access_lost)()
        if refusal is not None:
            await self.accept()
            await self.close(code=refusal)  # 4404 is the same for "no such run" and "not yours"
            return
        self.group = run_group(self.run_id)
        self._sending = asyncio.Lock()  # the catch-up and live output must not interleave
        # Join first, read the store second: every byte published from now on is either in what
        # we read or in a live message (workers store before they publish), so nothing is missed.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        # The status is read before the output: a run that ended by then has all its output stored,
        # so the replay sends it all before the terminal status, and no output ever follows it.
        status = await database_sync_to_async(self._status_payload)()
        for stream in STREAMS:
            await self._replay(stream)
        await self.run_status({"payload": status})
        samples = await sync_to_async(logstore.metrics_read)(self.run)
        # Samples are stored before they are published: a live one already in what we read is
        # recognised by its time and not sent twice.
        self.metrics_until = samples[-1]["t"] if samples else -1.0
        for i in range(0, len(samples), METRICS_PER_FRAME):
            await self.send_json(protocol.metrics_message(samples[i : i + METRICS_PER_FRAME]))
        self._keep_membership()

    async def disconnect(self, code) -> None:
        await self._stop_keeping_membership()
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)
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
        if self.ended:
            # All its output is stored before a run's end is published, but live messages can be
            # late or lost under load: send what the client lacks first, so the end comes last.
            async with self._sending:
                for stream in STREAMS:
                    await self._replay(stream)
        await self.send_json(event["payload"])

    async def _catch_up(self) -> None:
        if getattr(self, "ended", False):
            return
        async with self._sending:
            for stream in STREAMS:
                await self._replay(stream)
            samples = await sync_to_async(logstore.metrics_read)(self.run)
            fresh = [s for s in samples if s["t"] > self.metrics_until]
            if fresh:
                self.metrics_until = fresh[-1]["t"]
            for i in range(0, len(fresh), METRICS_PER_FRAME):
                await self.send_json(protocol.metrics_message(fresh[i : i + METRICS_PER_FRAME]))
        try:
            payload = await database_sync_to_async(self._status_payload)()
        except Http404:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        if payload["status"] in TERMINAL_STATUSES and not getattr(self, "ended", False):
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
        return None

    async def access_check(self, event) -> None:
        refusal = await database_sync_to_async(self._access_lost)()
        if refusal is not None:
            await self.close(code=refusal)

    def _status_payload(self) -> dict:
        run = selectors.run_get_visible(user=self.scope["user"], run_id=self.run_id)
        return selectors.run_status_payload(run=run)

    async def _replay(self, stream: str, until: int | None = None) -> None:
        """Send stored bytes from what the client has up to `until` (or the end)."""
        while until is None or self.sent[stream] < until:
            want = REPLAY_READ_BYTES if until is None else min(REPLAY_READ_BYTES, until - self.sent[stream])
            data = await sync_to_async(logstore.log_read)(self.run, stream, self.sent[stream], want)
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
            await self._replay(stream, until=offset)  # a dropped live message: fill from the store
            if self.sent[stream] < offset:
                return
            have = self.sent[stream]
        rest = data[have - offset :]
        await self.send_json(protocol.output_message(stream, have, rest))
        self.sent[stream] = have + len(rest)

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
        user = await database_sync_to_async(self._fresh_user)()
        if user is None:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self._follow(user)
        await self.accept()
        self._keep_membership()

    def _groups(self) -> list[str]:
        return [*super()._groups(), *self.list_groups]

    async def disconnect(self, code) -> None:
        await self._stop_keeping_membership()
        for group in getattr(self, "list_groups", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        await self._unwatch_access()

    async def _follow(self, user) -> None:
        """Join the run-list groups `user` may see now, and leave those they no longer may."""
        groups = await database_sync_to_async(run_list_groups)(user=user)
        for group in set(self.list_groups) - set(groups):
            await self.channel_layer.group_discard(group, self.channel_name)
        for group in set(groups) - set(self.list_groups):
            await self.channel_layer.group_add(group, self.channel_name)
        self.list_groups = groups

    async def access_check(self, event) -> None:
        user = await database_sync_to_async(self._fresh_user)()
        if user is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self._follow(user)  # a new role or team changes which runs the list shows


class RejectConsumer(WebsocketConsumer):
    """Catch-all: closes unknown websocket paths with 4404 instead of a daphne 500."""

    def connect(self) -> None:
        self.accept()
        self.close(code=CLOSE_NOT_FOUND)
