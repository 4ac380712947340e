"""A websocket whose connect takes longer than daphne's 5 s default (a busy machine, Redis or the
database slow for a moment) still gets an HTTP answer: the web waits up to
crucible_site.web.WEBSOCKET_CONNECT_SECONDS, where plain daphne closed the connection unanswered."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from tests.support.redis_server import RedisServer
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

STALL_SECONDS = 7


def test_a_socket_accepted_after_a_seven_second_redis_stall_is_answered(stack_env, tmp_path, django_user_model):
    from evaluations.accounts import tokens

    user = django_user_model.objects.create_user("slow-handshake")
    _, key = tokens.token_create(user=user, name="t")
    with RedisServer() as redis_server:
        env = {**stack_env, "CRUCIBLE_REDIS_URL": redis_server.url()}
        with Stack(env, log_dir=tmp_path, workers=0) as web:
            head = [
                "GET /ws/runs/ HTTP/1.1",
                f"Host: {web.host}:{web.port}",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
                f"Authorization: Token {key}",
            ]
            with socket.create_connection((web.host, web.port), timeout=30) as sock:
                # The socket joins its groups in Redis before it is accepted.
                redis_server.popen.send_signal(signal.SIGSTOP)
                try:
                    sock.sendall("\r\n".join(head).encode() + b"\r\n\r\n")
                    time.sleep(STALL_SECONDS)
                finally:
                    redis_server.popen.send_signal(signal.SIGCONT)
                answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101 "), answer[:300]
