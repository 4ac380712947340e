"""The web process: daphne, refusing request bodies over CRUCIBLE_MAX_REQUEST_BYTES before reading them.

    python -m crucible_site.web [--processes N] -b 127.0.0.1 -p 8000 crucible_site.asgi:application

Plain daphne spools a whole body to a temporary file before any Django code runs; here the 413 goes
out as soon as the Content-Length (or the chunked body so far) is over the limit. One process runs
Python on one core at a time: `--processes N` binds the port once and runs N daphnes that accept on it.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import os
import signal
import socket
import subprocess
import sys
import time

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


# A child that exits this soon after its start, this many times in a row, ends the group: a web that
# cannot start (a bad setting) must fail where its supervisor sees it, not be started forever.
QUICK_EXIT_SECONDS = 10.0
QUICK_EXITS = 3
STOP_SECONDS = 15.0  # within the systemd unit's TimeoutStopSec (docs/deploy.md)
_PARENT_ENV = "CRUCIBLE_WEB_PARENT"
_PR_SET_PDEATHSIG = 1


def serve_in_processes(processes: int, argv: list[str]) -> int:
    """Bind -b/-p once and run `processes` daphnes accepting on that socket (the kernel gives each
    connection to one of them). A child that dies is started again; SIGTERM or SIGINT stops them all."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-b", "--bind", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8000)
    where, rest = parser.parse_known_args(argv)
    if ":" in where.bind:  # daphne adopts inherited sockets as IPv4 only
        sys.exit("--processes: bind an IPv4 address (-b 127.0.0.1) and let the proxy in front speak IPv6")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((where.bind, where.port))
    listener.listen(1024)
    command = [sys.executable, "-m", "crucible_site.web", "--fd", str(listener.fileno()), *rest]
    env = {**os.environ, _PARENT_ENV: str(os.getpid())}
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stopping.append(signum))

    def start() -> tuple[subprocess.Popen, float]:
        return subprocess.Popen(command, env=env, pass_fds=(listener.fileno(),)), time.monotonic()

    children = [start() for _ in range(processes)]
    quick = 0
    status = 0
    while not stopping:
        time.sleep(0.2)
        for i, (child, started) in enumerate(children):
            code = child.poll()
            if code is None or stopping:
                continue
            quick = quick + 1 if time.monotonic() - started < QUICK_EXIT_SECONDS else 0
            if quick >= QUICK_EXITS:
                print(
                    f"web: process {child.pid} exited with {code} right after starting, {quick} times: stopping",
                    file=sys.stderr,
                )
                stopping.append(0)
                status = 1
                break
            print(f"web: process {child.pid} exited with {code}; starting another", file=sys.stderr, flush=True)
            children[i] = start()
    for child, _ in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for child, _ in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return status


def _die_with_parent() -> None:
    """A child of serve_in_processes: ends when its parent does, even a SIGKILLed one."""
    parent = int(os.environ.pop(_PARENT_ENV))
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it died before the line above
        sys.exit(1)


def main() -> None:
    processes_arg = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    processes_arg.add_argument("--processes", type=int, default=1)
    known, argv = processes_arg.parse_known_args(sys.argv[1:])
    if known.processes < 1:
        sys.exit("--processes must be 1 or more")
    if known.processes > 1:
        sys.exit(serve_in_processes(known.processes, argv))
    sys.argv[1:] = argv
    if _PARENT_ENV in os.environ:
        _die_with_parent()
    make_private()
    # daphne's Server.run() builds its factory from this module-level name.
    daphne.server.HTTPFactory = BodyLimitedHTTPFactory
    if not any(arg.startswith("--websocket_connect_timeout") for arg in sys.argv[1:]):
        sys.argv[1:1] = ["--websocket_connect_timeout", str(WEBSOCKET_CONNECT_SECONDS)]
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
