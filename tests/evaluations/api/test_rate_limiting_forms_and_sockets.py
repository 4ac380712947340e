"""Browser form submissions (submit, re-run, cancel, token creation) and websocket connects are rate
limited per user like the API, by the same limiter and settings (evaluations/api/throttling.py), in
the same buckets as the user's API requests. Every test counts under a cache prefix of its own
(tests/evaluations/conftest.py)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from evaluations.api import throttling
from evaluations.models import ApiToken

WINDOW_START = 1_800_000_000.0  # a whole number of minutes


@pytest.fixture
def clock(monkeypatch) -> None:
    """The throttles' time, 10 s into a minute (no test straddles a window)."""
    monkeypatch.setattr(throttling._WindowThrottle, "timer", staticmethod(lambda: WINDOW_START + 10))


def submit(client):
    return client.post("/submit/", {"name": "n", "code": "print(1)\n", "wall_seconds": "3", "memory_mb": "64"})


def test_the_submit_form_is_limited_like_api_writes(settings, clock, client, counts, no_worker) -> None:
    settings.CRUCIBLE_API_WRITE_RATE = "2/min"

    statuses = [submit(client).status_code for _ in range(3)]

    # Before: [302, 302, 302] — the form was not limited at all.
    assert statuses == [302, 302, 429]
    assert counts() == (2, 2)  # the refused submission stored nothing
    refused = submit(client)
    assert refused["Retry-After"] == "50"
    text = refused.content.decode()
    assert "2 requests per minute that submit, re-run, cancel or create a token" in text
    assert "Try again in 50 seconds" in text
    assert client.get("/submit/").status_code == 200  # showing the form is no submission


def test_rerun_cancel_and_new_tokens_share_one_count_with_the_users_api_writes(
    settings, clock, client, user, token, make_run, counts, no_worker
) -> None:
    settings.CRUCIBLE_API_WRITE_RATE = "3/min"
    run = make_run(user, status="queued")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    assert api.post("/api/v1/submissions/", {"code": "print(1)"}, format="json").status_code == 201
    assert client.post(f"/runs/{run.pk}/rerun/").status_code == 302
    assert client.post("/profile/tokens/", {"name": "second"}).status_code == 302
    # The user's 4th write of the minute, whichever way it comes.
    assert client.post(f"/runs/{run.pk}/cancel/").status_code == 429
    assert client.post("/profile/tokens/", {"name": "third"}).status_code == 429
    assert api.post("/api/v1/submissions/", {"code": "print(1)"}, format="json").status_code == 429

    run.refresh_from_db()
    assert run.status == "queued"  # the refused cancel did nothing
    assert ApiToken.objects.filter(user=user).count() == 2
    assert counts() == (2, 3)


def test_forms_count_in_the_users_overall_rate_too(settings, clock, client, counts, no_worker) -> None:
    settings.CRUCIBLE_API_RATE = "3/min"
    settings.CRUCIBLE_API_WRITE_RATE = "100/min"

    assert client.get("/api/v1/runs/").status_code == 200
    assert [submit(client).status_code for _ in range(3)] == [302, 302, 429]


def test_another_users_forms_have_a_count_of_their_own(settings, clock, client, other_user, no_worker) -> None:
    from django.test import Client

    settings.CRUCIBLE_API_WRITE_RATE = "1/min"
    mallory = Client()
    mallory.force_login(other_user)

    assert [submit(client).status_code for _ in range(2)] == [302, 429]
    assert submit(mallory).status_code == 302
