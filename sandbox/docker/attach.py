"""docker's attach stream without a TTY: stdin in, and the framed stdout/stderr split into two pipes."""

from __future__ import annotations

import contextlib
import os
import socket

from sandbox.pump import READ_CHUNK

# Each frame starts with an 8-byte header: [stream, 0, 0, 0, size (big-endian u32)].
FRAME_HEADER = 8


def demux(sock: socket.socket, out_fd: int, err_fd: int) -> None:
    """Split docker's framed attach stream into the two pipes; close them at EOF."""
    fds = {1: out_fd, 2: err_fd}
    header = b""
    target: int | None = None
    remaining = 0
    try:
        while True:
            data = sock.recv(READ_CHUNK)
            if not data:
                return
            view = memoryview(data)
            while view:
                if remaining == 0:
                    need = FRAME_HEADER - len(header)
                    header += bytes(view[:need])
                    view = view[need:]
                    if len(header) < FRAME_HEADER:
                        break
                    target = fds.get(header[0])
                    remaining = int.from_bytes(header[4:8], "big")
                    header = b""
                    continue
                part = view[:remaining]
                view = view[len(part) :]
                remaining -= len(part)
                if target is not None:
                    _write_all(target, part)
    except OSError:
        return  # the socket was shut down or the pump is gone (EPIPE): the run is over
    finally:
        for fd in (out_fd, err_fd):
            os.close(fd)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def feed_stdin(sock: socket.socket, data: bytes) -> None:
    """Send the request's stdin, then half-close: with StdinOnce docker closes the program's stdin."""
    with contextlib.suppress(OSError):
        if data:
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
