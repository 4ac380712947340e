"""Request bodies over CRUCIBLE_MAX_REQUEST_BYTES are refused by the web server before they are read."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LIMIT = 100_000


@pytest.fixture(scope="module")
def web(stack_env, tmp_path_factory):
    env = {**stack_env, "CRUCIBLE_MAX_REQUEST_BYTES": str(LIMIT)}
    with Stack(env, log_dir=tmp_path_factory.mktemp("body-limit"), workers=0) as running:
        yield running


def _connect(web: Stack) -> socket.socket:
    sock = socket.create_connection((web.host, web.port), timeout=10)
    return sock


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _head(path: str, *headers: str) -> bytes:
    return "\r\n".join([f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]).encode()


def test_a_declared_length_over_the_limit_is_answered_413_without_sending_the_body(web):
    with _connect(web) as sock:
        sock.sendall(_head("/login/", f"Content-Length: {10 * 1024**3}", "Content-Type: application/octet-stream"))
        response = _read_response(sock)  # the server answers and closes; no byte of the body was sent
    assert response.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in response
    assert f"at most {LIMIT} bytes".encode() in response


def test_a_client_that_asks_to_continue_is_refused_instead(web):
    with _connect(web) as sock:
        sock.sendall(_head("/api/v1/submissions/", f"Content-Length: {LIMIT + 1}", "Expect: 100-continue"))
        response = _read_response(sock)
    assert response.startswith(b"HTTP/1.1 413 "), response[:200]
    assert b"100 Continue" not in response


def test_a_chunked_body_is_refused_once_it_passes_the_limit(web):
    sent = [0]
    total = 50 * 1024 * 1024
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    with _connect(web) as sock:
        sock.sendall(_head("/login/", "Transfer-Encoding: chunked"))

        def send() -> None:
            try:
                while sent[0] < total:
                    sock.sendall(chunk)
                    sent[0] += 65536
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server stopped reading: what this test wants

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        started = time.monotonic()
        response = sock.recv(65536)
        elapsed = time.monotonic() - started
    assert response.startswith(b"HTTP/1.1 413 "), response[:200]
    assert sent[0] < total / 2, f"{sent[0]} bytes went out before the refusal"
    assert elapsed < 5


def test_a_body_within_the_limit_reaches_the_site(web):
    body = b"username=nobody&password=" + b"x" * (LIMIT // 2)
    with _connect(web) as sock:
        sock.sendall(
            _head(
                "/login/",
                f"Content-Length: {len(body)}",
                "Content-Type: application/x-www-form-urlencoded",
                "Connection: close",
            )
            + body
        )
        response = _read_response(sock)
    assert response.startswith(b"HTTP/1.1 403 ")  # Django's own answer: no CSRF token


def test_the_default_limit_admits_the_largest_upload_with_its_form():
    from django.conf import settings

    assert settings.CRUCIBLE_MAX_REQUEST_BYTES > settings.CRUCIBLE_MAX_UPLOAD_BYTES + settings.CRUCIBLE_MAX_STDIN_BYTES
