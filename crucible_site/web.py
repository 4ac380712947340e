"""The web process: daphne, refusing request bodies over CRUCIBLE_MAX_REQUEST_BYTES before reading them.

    python -m crucible_site.web -b 127.0.0.1 -p 8000 crucible_site.asgi:application   (daphne's options)

Plain daphne spools a whole body to a temporary file before any Django code runs; here the 413 goes
out as soon as the Content-Length (or the chunked body so far) is over the limit.
"""

from __future__ import annotations

import io
import sys

import daphne.server
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from django.conf import settings
from twisted.internet import reactor

from crucible_site.private_files import make_private

# A refused client that keeps sending has this long to stop and read the 413 before it is cut off.
LINGER_SECONDS = 2.0


def _refusal(limit: int) -> bytes:
    body = (
        f"Request body too large: this site accepts at most {limit} bytes "
        "(the largest upload plus its form). Send a smaller file.\n"
    ).encode()
    head = (
        "HTTP/1.1 413 Content Too Large\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + body


class BodyLimitedRequest(WebRequest):
    """daphne's request, counting the body as twisted hands it over (gotLength, handleContentChunk)."""

    refused = False
    body_bytes = 0

    def gotLength(self, length: int | None) -> None:
        super().gotLength(0 if length is not None and length > settings.CRUCIBLE_MAX_REQUEST_BYTES else length)
        if length is not None and length > settings.CRUCIBLE_MAX_REQUEST_BYTES:
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self.body_bytes += len(data)
        if self.body_bytes > settings.CRUCIBLE_MAX_REQUEST_BYTES:  # chunked: no length up front
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self.refused:
            super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        self.refused = True
        self.content.close()  # what a chunked body spooled so far goes now
        self.content = io.BytesIO()
        channel = self.channel
        # No "100 Continue" either: a client that asked first need not send the body at all.
        self.requestHeaders.removeHeader(b"Expect")
        # Anything more on this connection is dropped unparsed, never spooled.
        channel.dataReceived = channel.rawDataReceived = _discard
        transport = channel.transport
        transport.write(_refusal(settings.CRUCIBLE_MAX_REQUEST_BYTES))
        # Half-close and keep reading a little: closing with unread data would reset the connection,
        # and the client would miss the 413.
        lose_write = getattr(transport, "loseWriteConnection", transport.loseConnection)
        lose_write()
        reactor.callLater(LINGER_SECONDS, transport.abortConnection)
        self.server.log_action(
            "http",
            "complete",
            {
                # The request line is the channel's until the body is in.
                "path": getattr(channel, "_path", b"").decode("ascii", "replace"),
                "status": 413,
                "method": getattr(channel, "_command", b"").decode("ascii", "replace"),
                "client": f"{self.client.host}:{self.client.port}" if hasattr(self.client, "host") else None,
                "time_taken": 0.0,
                "size": 0,
            },
        )


def _discard(data: bytes) -> None:
    pass


class BodyLimitedHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BodyLimitedRequest
        return protocol


# daphne drops a websocket whose application has not accepted it within 5 s by default, with no
# HTTP answer at all: under a burst of connects on a busy machine, an answer later is better.
WEBSOCKET_CONNECT_SECONDS = 30


def main() -> None:
    make_private()
    # daphne's Server.run() builds its factory from this module-level name.
    daphne.server.HTTPFactory = BodyLimitedHTTPFactory
    if not any(arg.startswith("--websocket_connect_timeout") for arg in sys.argv[1:]):
        sys.argv[1:1] = ["--websocket_connect_timeout", str(WEBSOCKET_CONNECT_SECONDS)]
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
