"""Unit tests of sandbox.docker.attach: docker's framed attach stream split into two pipes."""

from __future__ import annotations

import os
import socket
import threading

from sandbox.docker.attach import demux, feed_stdin


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def demuxed(stream: bytes, *, piece: int) -> tuple[bytes, bytes]:
    """What demux writes to the stdout and stderr pipes when `stream` arrives `piece` bytes at a time."""
    ours, docker = socket.socketpair()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    read: dict[int, bytes] = {}
    # Read while sending: a frame larger than a pipe's buffer blocks demux until it is read.
    readers = [threading.Thread(target=lambda fd=fd: read.setdefault(fd, read_all(fd))) for fd in (out_r, err_r)]
    threads = [threading.Thread(target=demux, args=(ours, out_w, err_w)), *readers]
    for thread in threads:
        thread.start()
    for i in range(0, len(stream), piece):
        docker.sendall(stream[i : i + piece])
    docker.close()
    for thread in threads:
        thread.join(timeout=5)
    ours.close()
    return read[out_r], read[err_r]


def test_frames_go_to_their_own_pipe_however_the_stream_is_cut() -> None:
    stream = frame(1, b"out one\n") + frame(2, b"err\x00\xff") + frame(1, b"x" * 100_000) + frame(2, b"")
    for piece in (1, 3, 8, 9, 4096, len(stream)):
        assert demuxed(stream, piece=piece) == (b"out one\n" + b"x" * 100_000, b"err\x00\xff"), piece


def test_frames_of_an_unknown_stream_are_skipped() -> None:
    assert demuxed(frame(0, b"stdin echo") + frame(1, b"kept"), piece=5) == (b"kept", b"")


def test_stdin_is_sent_then_half_closed() -> None:
    ours, docker = socket.socketpair()
    feed_stdin(ours, b"line\n")
    received = b""
    while chunk := docker.recv(1024):
        received += chunk
    assert received == b"line\n"  # and then EOF: the program's stdin closes
    ours.close()
    docker.close()
