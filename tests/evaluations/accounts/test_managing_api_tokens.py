"""API tokens on the profile page and in the admin: created with a name and shown once, stored only
as a hash, listed with their prefix and last use, revoked by their owner or an admin."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from evaluations.accounts import tokens
from evaluations.models import ApiToken, AuditEvent

RUNS = "/api/v1/runs/"


def key_on_page(html: str) -> str:
    match = re.search(r'id="new-key"[^>]*value="([^"]+)"', html)
    assert match, "the new key is not on the page"
    return match.group(1)


def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_the_profile_page_needs_a_login(anonymous_client) -> None:
    response = anonymous_client.get("/profile/")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/profile/"


def test_every_page_links_to_the_profile(client) -> None:
    assert 'href="/profile/"' in client.get("/runs/").content.decode()


def test_a_new_token_is_shown_once_right_after_it_is_created(client, user) -> None:
    response = client.post("/profile/tokens/", {"name": "laptop script"}, follow=True)

    assert response.status_code == 200
    key = key_on_page(response.content.decode())
    assert key.startswith("cru_") and len(key) > 40
    assert "only time it is shown" in response.content.decode()
    assert "no-store" in response["Cache-Control"]  # not kept by the browser's cache either
    token = ApiToken.objects.get(user=user)
    assert token.name == "laptop script" and token.prefix == key[:12]

    later = client.get("/profile/").content.decode()
    assert key not in later
    assert "laptop script" in later and f"{token.prefix}…" in later


def test_reloading_the_new_key_page_makes_no_second_token_and_shows_no_key(client, user) -> None:
    created = client.post("/profile/tokens/", {"name": "laptop script"})
    assert created.status_code == 302  # post/redirect/get: a reload repeats the GET, not the POST
    key = key_on_page(client.get(created["Location"]).content.decode())

    reloaded = client.get(created["Location"], follow=True)

    html = reloaded.content.decode()
    assert reloaded.redirect_chain == [("/profile/", 302)]
    assert key not in html and "was shown once, when it was created, and cannot be shown again" in html
    assert ApiToken.objects.filter(user=user).count() == 1


def test_the_new_key_travels_only_in_a_short_lived_cookie_for_that_token(client, user, other_user) -> None:
    created = client.post("/profile/tokens/", {"name": "ci"})
    cookie = created.cookies["crucible_new_key"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/profile/tokens/"
    assert 0 < int(cookie["max-age"]) <= 300
    other = tokens.token_create(user=user, name="other")[0]

    # The cookie of one token does not show as another's key.
    assert client.get(f"/profile/tokens/{other.pk}/created/")["Location"] == "/profile/"


def test_the_key_from_the_page_works_against_the_api(client) -> None:
    key = key_on_page(client.post("/profile/tokens/", {"name": "ci"}, follow=True).content.decode())

    assert api(key).get(RUNS).status_code == 200


def test_only_a_hash_of_the_key_is_stored(user) -> None:
    token, key = tokens.token_create(user=user, name="ci")

    stored = ApiToken.objects.filter(pk=token.pk).values().get()
    assert stored["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(stored)
    assert key not in str(list(AuditEvent.objects.values()))


def test_two_tokens_never_share_a_key(user) -> None:
    keys = {tokens.token_create(user=user, name=f"t{i}")[1] for i in range(20)}

    assert len(keys) == 20


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_a_token_needs_a_short_name(client, user, name) -> None:
    response = client.post("/profile/tokens/", {"name": name})

    assert response.status_code == 400
    assert 'class="error"' in response.content.decode()
    assert not ApiToken.objects.filter(user=user).exists()


def test_a_user_may_hold_at_most_twenty_live_tokens(client, user) -> None:
    for i in range(tokens.MAX_LIVE_TOKENS):
        tokens.token_create(user=user, name=f"t{i}")
    audited = AuditEvent.objects.count()

    response = client.post("/profile/tokens/", {"name": "one too many"})

    assert tokens.MAX_LIVE_TOKENS == 20
    assert response.status_code == 400
    html = response.content.decode()
    assert 'class="error"' in html and "you already have 20 live API tokens" in html
    assert "revoke one you no longer use" in html
    assert ApiToken.objects.filter(user=user).count() == 20
    assert AuditEvent.objects.count() == audited  # a refusal is not an event


def test_revoking_a_token_makes_room_for_a_new_one(client, user) -> None:
    made = [tokens.token_create(user=user, name=f"t{i}")[0] for i in range(tokens.MAX_LIVE_TOKENS)]
    tokens.token_revoke(token=made[0])

    response = client.post("/profile/tokens/", {"name": "replacement"})

    assert response.status_code == 302
    assert ApiToken.objects.filter(user=user, revoked_at__isnull=True).count() == 20


def test_the_profile_lists_only_my_own_tokens(client, user, other_user, make_token) -> None:
    mine = make_token(user, "my-ci")
    theirs = make_token(other_user, "their-ci")

    html = client.get("/profile/").content.decode()

    assert "my-ci" in html and mine.row.prefix in html
    assert "their-ci" not in html and theirs.row.prefix not in html


def test_revoking_a_token_refuses_it_at_once(client, token) -> None:
    assert api(token.key).get(RUNS).status_code == 200

    response = client.post(f"/profile/tokens/{token.row.pk}/revoke/")

    assert response.status_code == 302 and response["Location"] == "/profile/"
    refused = api(token.key).get(RUNS)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    page = client.get("/profile/").content.decode()
    assert "Token “test”" in page and "revoked" in page


def test_revoking_twice_changes_nothing(user, make_token) -> None:
    token = make_token(user)

    assert tokens.token_revoke(token=token.row) is True
    first = ApiToken.objects.get(pk=token.row.pk).revoked_at
    assert tokens.token_revoke(token=ApiToken.objects.get(pk=token.row.pk)) is False

    assert ApiToken.objects.get(pk=token.row.pk).revoked_at == first
    assert AuditEvent.objects.filter(action="token_revoke").count() == 1


def test_someone_elses_token_cannot_be_revoked_and_is_not_found(client, other_user, make_token) -> None:
    theirs = make_token(other_user)

    response = client.post(f"/profile/tokens/{theirs.row.pk}/revoke/")

    assert response.status_code == 404
    assert api(theirs.key).get(RUNS).status_code == 200


def test_revoking_is_a_post(client, token) -> None:
    assert client.get(f"/profile/tokens/{token.row.pk}/revoke/").status_code == 405
    assert api(token.key).get(RUNS).status_code == 200


def test_the_profile_forms_need_a_csrf_token(user, make_token) -> None:
    token = make_token(user)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)

    created = browser.post("/profile/tokens/", {"name": "sneaky"})
    revoked = browser.post(f"/profile/tokens/{token.row.pk}/revoke/")

    assert created.status_code == 403 and revoked.status_code == 403
    assert list(ApiToken.objects.values_list("name", "revoked_at")) == [("test", None)]


def test_the_profile_forms_carry_a_csrf_token(client, token) -> None:
    html = client.get("/profile/").content.decode()

    assert html.count('name="csrfmiddlewaretoken"') >= 3  # create, revoke, and the log-out form


def test_last_used_is_recorded_at_most_once_a_minute(token) -> None:
    client = api(token.key)
    assert ApiToken.objects.get(pk=token.row.pk).last_used_at is None

    client.get(RUNS)
    first = ApiToken.objects.get(pk=token.row.pk).last_used_at
    assert first is not None and timezone.now() - first < timedelta(seconds=5)

    client.get(RUNS)
    assert ApiToken.objects.get(pk=token.row.pk).last_used_at == first  # no write per request

    an_hour_ago = timezone.now() - timedelta(hours=1)
    ApiToken.objects.filter(pk=token.row.pk).update(last_used_at=an_hour_ago)
    client.get(RUNS)
    assert ApiToken.objects.get(pk=token.row.pk).last_used_at > an_hour_ago + timedelta(minutes=59)


def test_a_request_within_the_minute_does_not_write(token) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = api(token.key)
    client.get(RUNS)

    with CaptureQueriesContext(connection) as queries:
        assert client.get(RUNS).status_code == 200

    statements = [q["sql"] for q in queries.captured_queries]
    assert not [sql for sql in statements if sql.lstrip().upper().startswith("UPDATE")], statements
    # The token and its user in one query.
    assert len([sql for sql in statements if "evaluations_apitoken" in sql]) == 1, statements


# -- the admin ----------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(make_user) -> Client:
    browser = Client()
    browser.force_login(make_user("root", is_superuser=True, is_staff=True))
    return browser


def test_an_admin_revokes_any_users_tokens_from_the_admin(admin_client, user, other_user, make_token) -> None:
    first, second, kept = make_token(user, "a"), make_token(other_user, "b"), make_token(other_user, "c")

    response = admin_client.post(
        "/admin/evaluations/apitoken/",
        {"action": "revoke_selected", "_selected_action": [first.row.pk, second.row.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Revoked 2 tokens" in response.content.decode()
    assert api(first.key).get(RUNS).status_code == 401
    assert api(second.key).get(RUNS).status_code == 401
    assert api(kept.key).get(RUNS).status_code == 200
    events = AuditEvent.objects.filter(action="token_revoke")
    assert sorted(events.values_list("target", flat=True)) == sorted(
        [f"token:{first.row.pk}", f"token:{second.row.pk}"]
    )
    assert set(events.values_list("actor_name", flat=True)) == {"root"}


def test_the_admin_lists_tokens_without_their_hash(admin_client, token) -> None:
    listing = admin_client.get("/admin/evaluations/apitoken/").content.decode()
    detail = admin_client.get(f"/admin/evaluations/apitoken/{token.row.pk}/change/").content.decode()

    assert token.row.prefix in listing and "alice" in listing
    for html in (listing, detail):
        assert token.row.key_hash not in html and token.key not in html
        assert "key_hash" not in html and "Key hash" not in html


def test_the_admin_cannot_add_tokens_or_edit_them(admin_client, token) -> None:
    assert admin_client.get("/admin/evaluations/apitoken/add/").status_code == 403
    admin_client.post(f"/admin/evaluations/apitoken/{token.row.pk}/change/", {"name": "renamed"})

    assert ApiToken.objects.get(pk=token.row.pk).name == "test"


def test_a_staff_user_without_permissions_cannot_revoke(make_user, token) -> None:
    browser = Client()
    browser.force_login(make_user("staffer", is_staff=True))

    response = browser.post(
        "/admin/evaluations/apitoken/", {"action": "revoke_selected", "_selected_action": [token.row.pk]}
    )

    assert response.status_code in (302, 403)
    assert ApiToken.objects.get(pk=token.row.pk).revoked_at is None
