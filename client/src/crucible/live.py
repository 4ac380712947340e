"""Following a run over the websocket (the server's docs/live-runs.md): the token goes in the
handshake's Authorization header, the byte offsets received so far in the query string, so a
dropped connection resumes where it stopped with no gap and no duplicate."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from crucible import errors
from crucible.models import STREAMS, Event, Metrics, MetricSample, Output, Reconnecting, Status

if TYPE_CHECKING:
    from crucible.client import Client

REFUSALS = {
    4400: "the server refused the offsets asked for",
    4401: "the token was refused (unknown, revoked or expired): make a new one on /profile/",
    4403: "the server refused this client's Origin",
    4404: "no such run, or not one you may see",
}
CLOSE_RATE_LIMITED = 4429
# A socket that hears nothing (not even a pong) for this long is dead: reconnect.
PING_INTERVAL = 10.0
PING_TIMEOUT = 10.0


def follow(
    client: Client, run_id: int, *, offsets: Mapping[str, int] | None = None, reconnect_for: float = 60.0
) -> Iterator[Event]:
    have = {stream: int((offsets or {}).get(stream, 0)) for stream in STREAMS}
    attempt = 0
    connected_at = time.monotonic()  # the last time a connection was open
    while True:
        try:
            with connect(
                client.websocket_url(run_id, have),
                additional_headers=client.websocket_headers(),
                user_agent_header=client.user_agent,
                open_timeout=10,
                close_timeout=2,
                ping_interval=PING_INTERVAL,
                ping_timeout=PING_TIMEOUT,
                max_size=2**20,
            ) as ws:
                connected_at = time.monotonic()
                for frame in ws:
                    attempt = 0
                    connected_at = time.monotonic()
                    message = json.loads(frame)
                    kind = message.get("type")
                    if kind == "output":
                        yield from _output(client, run_id, message, have)
                    elif kind == "metrics":
                        yield Metrics(tuple(MetricSample.from_json(s) for s in message.get("samples", ())))
                    elif kind == "status":
                        status = Status.from_json(message)
                        yield status
                        if status.is_terminal:
                            return  # the server sends all output before the end, and nothing after
            error, delay_floor = "the server closed the connection", 0.0
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            if code in REFUSALS:
                raise errors.LiveRefused(code, f"run {run_id}: {REFUSALS[code]} (websocket close {code})") from None
            error = f"the connection closed ({code})"
            delay_floor = 5.0 if code == CLOSE_RATE_LIMITED else 0.0
        except InvalidStatus as exc:
            status_code = exc.response.status_code
            if status_code in (401, 403, 404):
                message = f"run {run_id}: the server refused the websocket (HTTP {status_code})"
                raise errors.LiveRefused(status_code, message) from None
            error, delay_floor = f"the websocket handshake got HTTP {status_code}", 0.0
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            error, delay_floor = f"cannot connect: {exc}", 0.0
        attempt += 1
        if time.monotonic() - connected_at > reconnect_for:
            raise errors.ConnectionFailed(
                f"lost the live connection to run {run_id} for over {reconnect_for:g} s ({error}); "
                f"`crucible follow {run_id}` picks it up again"
            )
        delay = max(delay_floor, min(0.2 * 2 ** (attempt - 1), 5.0))
        yield Reconnecting(attempt=attempt, delay=delay, error=error)
        time.sleep(delay)


def _output(client: Client, run_id: int, message: dict, have: dict[str, int]) -> Iterator[Output]:
    stream, offset = message["stream"], int(message["offset"])
    data = base64.b64decode(message["data"])
    if offset > have[stream]:
        # The server fills gaps itself; should one ever reach us, read it from the store.
        gap = client.logs(run_id, stream=stream, offset=have[stream], limit=offset - have[stream])
        if gap.data:
            yield Output(stream, have[stream], gap.data)
            have[stream] += len(gap.data)
        if have[stream] < offset:
            raise errors.ConnectionFailed(f"run {run_id}: {stream} bytes {have[stream]}..{offset} are missing")
    skip = have[stream] - offset
    if skip >= len(data):
        return
    yield Output(stream, have[stream], data[skip:])
    have[stream] = offset + len(data)
