"""Counts open websockets per route for /metrics: an ASGI wrapper around each websocket route's
consumer, so a socket counts from its accept until its close, whichever side ends it."""

from __future__ import annotations

from evaluations.monitoring.metrics import WEBSOCKETS_OPEN


def counted(route: str, app):
    """`app` (a consumer's ASGI application) with its open sockets counted under `route`."""
    gauge = WEBSOCKETS_OPEN.labels(route=route)

    async def application(scope, receive, send):
        is_open = False

        async def send_counted(message):
            nonlocal is_open
            await send(message)
            if message["type"] == "websocket.accept" and not is_open:
                is_open = True
                gauge.inc()
            elif message["type"] == "websocket.close" and is_open:
                is_open = False
                gauge.dec()

        try:
            await app(scope, receive, send_counted)
        finally:
            if is_open:  # the client went away, or the consumer ended without a close
                gauge.dec()

    return application
