"""A deactivated user is locked out at once: their open browser session, their API tokens and their
websocket connects stop working on the very next request, with nothing to log out or expire."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client
from rest_framework.test import APIClient

ORIGIN = b"http://testserver"
TIMEOUT = 10.0


def deactivate(user) -> None:
    user.is_active = False
    user.save(update_fields=["is_active"])


@pytest.fixture
def browser(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def api(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.mark.parametrize("path", ["/runs/", "/submit/", "/profile/"])
def test_their_open_session_is_sent_to_the_login_page(browser, user, path) -> None:
    assert browser.get(path).status_code == 200

    deactivate(user)

    response = browser.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_their_run_page_is_closed_to_them(browser, user, make_run) -> None:
    run = make_run(user)
    assert browser.get(f"/runs/{run.pk}/").status_code == 200

    deactivate(user)

    assert browser.get(f"/runs/{run.pk}/").status_code == 302


def test_their_session_cannot_use_the_api(browser, user) -> None:
    assert browser.get("/api/v1/runs/").status_code == 200

    deactivate(user)

    assert browser.get("/api/v1/runs/").status_code == 401


def test_their_tokens_are_refused(api, user, counts) -> None:
    assert api.get("/api/v1/runs/").status_code == 200

    deactivate(user)

    assert api.get("/api/v1/runs/").status_code == 401
    response = api.post("/api/v1/submissions/", {"code": "print(1)"}, format="json")
    assert response.status_code == 401 and "deactivated" in response.json()["detail"]
    assert counts() == (0, 0)


def test_their_tokens_work_again_if_they_are_reactivated(api, user) -> None:
    deactivate(user)
    user.is_active = True
    user.save(update_fields=["is_active"])

    assert api.get("/api/v1/runs/").status_code == 200


def test_they_cannot_log_in_again(anonymous_client, user, password) -> None:
    deactivate(user)

    response = anonymous_client.post("/login/", {"username": user.username, "password": password})

    assert response.status_code == 200  # the form again, with its error
    assert anonymous_client.get("/runs/").status_code == 302


# -- websockets ---------------------------------------------------------------------------------------


@pytest.fixture
def session_headers(user) -> list[tuple[bytes, bytes]]:
    browser = Client()
    browser.force_login(user)
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={browser.cookies[django_settings.SESSION_COOKIE_NAME].value}"
    return [(b"cookie", cookie.encode()), (b"origin", ORIGIN)]


@pytest.fixture
def token_headers(token) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Token {token.key}".encode())]


async def connect(path: str, headers) -> tuple[str, int | None]:
    """("open", None) if the socket is accepted and stays open; ("closed", code) if it is closed."""
    from crucible_site.asgi import application

    comm = WebsocketCommunicator(application, path, headers=headers)
    try:
        accepted, code = await comm.connect(timeout=TIMEOUT)
        if not accepted:
            return "closed", code
        # A refusal is a close right after the accept; the run list sends nothing until a run moves.
        if await comm.receive_nothing(timeout=0.5):
            return "open", None
        message = await comm.receive_output(timeout=TIMEOUT)
        if message["type"] == "websocket.close":
            return "closed", message["code"]
        return "open", None
    finally:
        await comm.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer_of_its_own")
@pytest.mark.parametrize("credentials", ["session_headers", "token_headers"])
@pytest.mark.parametrize("path", ["/ws/runs/", "run page"])
async def test_their_websocket_connects_are_refused(
    session_headers, token_headers, user, make_run, credentials, path
) -> None:
    headers = {"session_headers": session_headers, "token_headers": token_headers}[credentials]
    run = await database_sync_to_async(make_run)(user, status="succeeded")
    path = f"/ws/runs/{run.pk}/" if path == "run page" else path
    assert await connect(path, headers) == ("open", None)

    await database_sync_to_async(deactivate)(user)

    assert await connect(path, headers) == ("closed", 4401)
