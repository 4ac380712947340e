"""HTTP through the ASGI application daphne serves (crucible_site/asgi.py): the whole middleware
chain and the view run in one call on a worker thread, not one thread hop per middleware."""

from __future__ import annotations

from unittest import mock

import pytest
from asgiref.sync import SyncToAsync
from channels.testing import HttpCommunicator

from crucible_site.asgi import application
from evaluations.accounts import tokens

HOST = [(b"host", b"testserver")]

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def counting_thread_hops():
    calls = []
    real = SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        calls.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await real(self, *args, **kwargs)

    return calls, mock.patch.object(SyncToAsync, "__call__", counted)


async def test_a_request_runs_its_middleware_and_view_in_one_thread_hop():
    calls, patch = counting_thread_hops()
    with patch:
        response = await HttpCommunicator(application, "GET", "/healthz", headers=HOST).get_response()
    assert response["status"] == 200
    headers = {name.lower(): value for name, value in response["headers"]}
    assert b"x-request-id" in headers  # the outermost middleware ran
    assert b"x-frame-options" in headers  # and one near the view
    # One hop for the chain; Django's request_started/finished signals and the close take the rest.
    # Stock ASGI mode took 16 here: two per MiddlewareMixin.
    chain = [name for name in calls if "get_response" in name]
    assert chain == ["BaseHandler.get_response"]
    assert len(calls) <= 4, calls


async def test_an_api_request_through_asgi_reads_the_database_and_answers(django_user_model):
    from asgiref.sync import sync_to_async

    user = await sync_to_async(django_user_model.objects.create_user)("asgi-reader")
    _, key = await sync_to_async(tokens.token_create)(user=user, name="t")
    communicator = HttpCommunicator(
        application, "GET", "/api/v1/runs/", headers=[*HOST, (b"authorization", f"Token {key}".encode())]
    )
    response = await communicator.get_response()
    assert response["status"] == 200, response["body"][:300]
    assert b'"results":[]' in response["body"].replace(b" ", b"")
