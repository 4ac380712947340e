"""A websocket that is already open follows access changes at once: deactivating its user, revoking
its token, logging out, unsharing a submission or changing a role closes it (or, for a run list,
changes what it hears) without waiting for a reconnect. Changes to anyone else leave it alone."""

from __future__ import annotations

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections
from django.test import Client

from evaluations.accounts import services as account_services
from evaluations.accounts import tokens
from evaluations.models import Role, Team
from evaluations.runs import lifecycle, services

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer_of_its_own"),  # tests/evaluations/conftest.py
]

TIMEOUT = 10.0
QUIET = 0.5


@pytest_asyncio.fixture(autouse=True)
async def close_the_db_threads_connection():
    yield
    await database_sync_to_async(connections.close_all)()  # or PostgreSQL's test DB cannot be dropped


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def session_headers(client: Client) -> list[tuple[bytes, bytes]]:
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return [(b"cookie", cookie.encode()), (b"origin", b"http://testserver")]


def token_headers(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Token {key}".encode())]


async def open_socket(path: str, headers) -> WebsocketCommunicator:
    """An accepted socket with its replay (output, status, metrics) read, so what comes next is live."""
    from crucible_site.asgi import application

    comm = WebsocketCommunicator(application, path, headers=headers)
    accepted, _ = await comm.connect(timeout=TIMEOUT)
    assert accepted
    while not await comm.receive_nothing(timeout=QUIET):
        message = await comm.receive_output(timeout=TIMEOUT)
        assert message["type"] != "websocket.close", f"refused on connect with {message.get('code')}"
    return comm


async def closed_with(comm: WebsocketCommunicator) -> int | None:
    """The close code the server sends next, or None if the socket stays open and quiet."""
    try:
        if await comm.receive_nothing(timeout=2.0):
            return None
        message = await comm.receive_output(timeout=TIMEOUT)
        while message["type"] == "websocket.send":  # a live message may still come first
            message = await comm.receive_output(timeout=TIMEOUT)
        return message["code"]
    finally:
        await comm.disconnect()


async def in_db(fn, *args, **kwargs):
    return await database_sync_to_async(fn)(*args, **kwargs)


@pytest.mark.parametrize("credentials", ["session", "token"])
async def test_deactivating_a_user_closes_the_sockets_they_have_open(make_user, make_run, make_token, credentials):
    alice, admin = await in_db(make_user, "alice"), await in_db(make_user, "admin")
    run = await in_db(make_run, alice, status="running")
    headers = (
        session_headers(await in_db(logged_in, alice))
        if credentials == "session"
        else token_headers((await in_db(make_token, alice)).key)
    )
    run_socket = await open_socket(f"/ws/runs/{run.pk}/", headers)
    list_socket = await open_socket("/ws/runs/", headers)

    await in_db(account_services.user_deactivate, actor=admin, user=alice)

    assert await closed_with(run_socket) == 4401
    assert await closed_with(list_socket) == 4401


async def test_revoking_a_token_closes_the_sockets_opened_with_it_and_no_others(make_user, make_run, make_token):
    alice = await in_db(make_user, "alice")
    run = await in_db(make_run, alice, status="running")
    revoked, kept = await in_db(make_token, alice, "ci"), await in_db(make_token, alice, "laptop")
    with_revoked = await open_socket(f"/ws/runs/{run.pk}/", token_headers(revoked.key))
    with_kept = await open_socket(f"/ws/runs/{run.pk}/", token_headers(kept.key))
    with_session = await open_socket(f"/ws/runs/{run.pk}/", session_headers(await in_db(logged_in, alice)))

    assert await in_db(tokens.token_revoke, token=revoked.row)

    assert await closed_with(with_revoked) == 4401
    assert await closed_with(with_kept) is None
    assert await closed_with(with_session) is None


async def test_logging_out_closes_that_sessions_sockets(make_user, make_run):
    alice = await in_db(make_user, "alice")
    run = await in_db(make_run, alice, status="running")
    browser, other_browser = await in_db(logged_in, alice), await in_db(logged_in, alice)
    this_session = await open_socket(f"/ws/runs/{run.pk}/", session_headers(browser))
    other_session = await open_socket(f"/ws/runs/{run.pk}/", session_headers(other_browser))

    response = await in_db(browser.post, "/logout/")
    assert response.status_code == 302

    assert await closed_with(this_session) == 4401
    assert await closed_with(other_session) is None


async def test_unsharing_closes_teammates_sockets_on_its_runs_but_not_the_owners(make_user, make_run):
    def world():
        lab = Team.objects.create(name="lab")
        owner, teammate = make_user("owner"), make_user("teammate")
        for user in (owner, teammate):
            account_services.user_set_team(actor=None, user=user, team=lab)
        run = make_run(owner, status="running")
        services.submission_set_shared(actor=owner, submission=run.submission, shared=True)
        return owner, teammate, run

    owner, teammate, run = await in_db(world)
    teammates = await open_socket(f"/ws/runs/{run.pk}/", session_headers(await in_db(logged_in, teammate)))
    owners = await open_socket(f"/ws/runs/{run.pk}/", session_headers(await in_db(logged_in, owner)))

    await in_db(services.submission_set_shared, actor=owner, submission=run.submission, shared=False)

    assert await closed_with(teammates) == 4404  # as if the run did not exist, like the page
    assert await closed_with(owners) is None


async def test_a_reviewer_made_researcher_loses_other_peoples_runs_at_once(make_user, make_run):
    def world():
        admin, reviewer, alice = make_user("admin"), make_user("reviewer"), make_user("alice")
        account_services.user_set_role(actor=None, user=admin, role=Role.ADMIN)
        account_services.user_set_role(actor=None, user=reviewer, role=Role.REVIEWER)
        return admin, reviewer, make_run(alice, status="running")

    admin, reviewer, run = await in_db(world)
    socket = await open_socket(f"/ws/runs/{run.pk}/", session_headers(await in_db(logged_in, reviewer)))

    await in_db(account_services.user_set_role, actor=admin, user=reviewer, role=Role.RESEARCHER)

    assert await closed_with(socket) == 4404


async def test_a_run_list_hears_what_the_new_role_may_see(make_user, make_run):
    def world():
        admin, reviewer, alice = make_user("admin"), make_user("reviewer"), make_user("alice")
        account_services.user_set_role(actor=None, user=admin, role=Role.ADMIN)
        account_services.user_set_role(actor=None, user=reviewer, role=Role.REVIEWER)
        return admin, reviewer, make_run(alice), make_run(reviewer)

    admin, reviewer, alices_run, own_run = await in_db(world)
    socket = await open_socket("/ws/runs/", session_headers(await in_db(logged_in, reviewer)))

    await in_db(account_services.user_set_role, actor=admin, user=reviewer, role=Role.RESEARCHER)
    await socket.receive_nothing(timeout=QUIET)  # the socket re-joins its groups meanwhile
    for run in (alices_run, own_run):
        assert await in_db(lifecycle.run_claim, run_id=run.pk)  # queued → running, published on commit

    heard = set()
    while not await socket.receive_nothing(timeout=1.0):
        heard.add((await socket.receive_json_from(timeout=TIMEOUT))["id"])
    await socket.disconnect()
    assert heard == {own_run.pk}


async def test_changes_to_someone_else_leave_a_socket_open(make_user, make_run, make_token):
    def world():
        admin, alice, bob = make_user("admin"), make_user("alice"), make_user("bob")
        account_services.user_set_role(actor=None, user=admin, role=Role.ADMIN)
        return admin, alice, bob, make_run(alice, status="running")

    admin, alice, bob, run = await in_db(world)
    socket = await open_socket(f"/ws/runs/{run.pk}/", session_headers(await in_db(logged_in, alice)))
    bobs_token = await in_db(make_token, bob)

    await in_db(tokens.token_revoke, token=bobs_token.row)
    await in_db(account_services.user_set_role, actor=admin, user=bob, role=Role.REVIEWER)
    await in_db(account_services.user_deactivate, actor=admin, user=bob)

    assert await closed_with(socket) is None


@pytest.mark.parametrize("how", ["set_password", "set_unusable_password"])
async def test_changing_a_password_closes_the_users_other_sessions_sockets(make_user, make_run, make_token, how):
    alice = await in_db(make_user, "alice")
    run = await in_db(make_run, alice, status="running")
    session_socket = await open_socket(f"/ws/runs/{run.pk}/", session_headers(await in_db(logged_in, alice)))
    token_socket = await open_socket(f"/ws/runs/{run.pk}/", token_headers((await in_db(make_token, alice)).key))

    def change(user):  # as the admin's password form and the set-password page do
        if how == "set_password":
            user.set_password("a new password, long enough")
        else:
            user.set_unusable_password()
        user.save()

    await in_db(change, alice)

    assert await closed_with(session_socket) == 4401  # a session made with the old password hash
    assert await closed_with(token_socket) is None  # a token does not depend on the password


async def test_saving_a_user_without_changing_the_password_leaves_their_sockets_open(make_user, make_run):
    alice = await in_db(make_user, "alice")
    run = await in_db(make_run, alice, status="running")
    socket = await open_socket(f"/ws/runs/{run.pk}/", session_headers(await in_db(logged_in, alice)))

    def edit(user):
        user.email = "alice@example.invalid"
        user.save()

    await in_db(edit, alice)

    assert await closed_with(socket) is None


async def test_deleting_a_user_closes_the_sockets_they_have_open(make_user, make_run, make_token):
    alice = await in_db(make_user, "alice")
    run = await in_db(make_run, alice, status="running")
    headers = token_headers((await in_db(make_token, alice)).key)
    list_socket = await open_socket("/ws/runs/", headers)
    run_socket = await open_socket(f"/ws/runs/{run.pk}/", headers)

    await in_db(alice.delete)

    assert await closed_with(list_socket) == 4401
    assert await closed_with(run_socket) in (4401, 4404)  # the run went with its owner
