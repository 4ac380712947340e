"""Websocket connects count like API requests of their user (and token): over the user's rate the
socket is closed with 4429 (docs/live-runs.md), before anything is sent."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from evaluations.api import throttling

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer_of_its_own"),  # tests/evaluations/conftest.py
]

ORIGIN = b"http://testserver"
TIMEOUT = 10.0


@pytest.fixture
def clock(monkeypatch) -> None:
    monkeypatch.setattr(throttling._WindowThrottle, "timer", staticmethod(lambda: 1_800_000_010.0))


def cookie_of(user) -> bytes:
    from django.conf import settings
    from django.test import Client

    browser = Client()
    browser.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def first_message(path: str, headers) -> dict:
    """What the server sends first after accepting: a message, or its close."""
    from crucible_site.asgi import application

    comm = WebsocketCommunicator(application, path, headers=headers)
    try:
        accepted, code = await comm.connect(timeout=TIMEOUT)
        if not accepted:
            return {"type": "websocket.close", "code": code}
        return await comm.receive_output(timeout=TIMEOUT)
    finally:
        await comm.disconnect()


async def test_connects_over_the_users_rate_are_closed_with_4429(settings, clock, user, other_user, make_run):
    from asgiref.sync import sync_to_async

    settings.CRUCIBLE_API_RATE = "2/min"
    run = await sync_to_async(make_run)(user, status="queued")
    alice = [(b"cookie", await sync_to_async(cookie_of)(user)), (b"origin", ORIGIN)]
    mallory = [(b"cookie", await sync_to_async(cookie_of)(other_user)), (b"origin", ORIGIN)]

    firsts = [await first_message(f"/ws/runs/{run.pk}/", alice) for _ in range(3)]

    # Before: every connect was served.
    assert [m["type"] for m in firsts[:2]] == ["websocket.send", "websocket.send"]
    assert firsts[2] == {"type": "websocket.close", "code": 4429}
    assert (await first_message("/ws/runs/", alice))["code"] == 4429  # the run list's socket too
    # Another user's count is their own (their socket to a run not theirs is a 4404, not a 4429).
    assert (await first_message(f"/ws/runs/{run.pk}/", mallory))["code"] == 4404


async def test_connects_share_the_count_with_the_users_api_requests(settings, clock, user, token, make_run):
    from asgiref.sync import sync_to_async
    from rest_framework.test import APIClient

    settings.CRUCIBLE_API_RATE = "2/min"
    run = await sync_to_async(make_run)(user, status="queued")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert (await sync_to_async(api.get)("/api/v1/runs/")).status_code == 200
    headers = [(b"authorization", f"Token {token.key}".encode())]

    assert (await first_message(f"/ws/runs/{run.pk}/", headers))["type"] == "websocket.send"
    assert (await first_message(f"/ws/runs/{run.pk}/", headers)) == {"type": "websocket.close", "code": 4429}
    assert (await sync_to_async(api.get)("/api/v1/runs/")).status_code == 429
