"""`Authorization: Token <key>` on the API: which keys are accepted, and what a refused caller is told."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from evaluations.accounts import tokens

RUNS = "/api/v1/runs/"


def get_runs(authorization: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization)
    return client.get(RUNS)


def test_a_live_token_authenticates_its_user(token, make_run) -> None:
    run = make_run(token.user)

    response = get_runs(f"Token {token.key}")

    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [run.pk]


def test_the_keyword_is_case_insensitive(token) -> None:
    assert get_runs(f"token {token.key}").status_code == 200


def test_an_unknown_key_is_refused_with_where_to_get_one(db) -> None:
    response = get_runs("Token cru_" + "A" * 43)

    assert response.status_code == 401
    assert "no such API token" in response.json()["detail"]
    assert "/profile/" in response.json()["detail"]
    assert response["WWW-Authenticate"] == "Token"


def test_a_revoked_key_is_refused_saying_so(token) -> None:
    tokens.token_revoke(token=token.row)

    response = get_runs(f"Token {token.key}")

    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    assert token.row.prefix in response.json()["detail"]


def test_a_deactivated_users_key_is_refused_saying_so(token) -> None:
    token.user.is_active = False
    token.user.save(update_fields=["is_active"])

    response = get_runs(f"Token {token.key}")

    assert response.status_code == 401
    assert "deactivated" in response.json()["detail"]


@pytest.mark.parametrize(
    "header",
    ["Token", "Token a b", "Token \u00e9t\u00e9"],
    ids=["no-key", "spaces", "not-ascii"],
)
def test_a_malformed_header_is_refused(db, header) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header.encode("utf-8").decode("latin-1"))

    response = client.get(RUNS)

    assert response.status_code == 401
    assert "token" in response.json()["detail"].lower()


def test_a_very_long_key_is_refused_without_a_lookup(db, django_assert_num_queries) -> None:
    with django_assert_num_queries(0):
        response = get_runs("Token " + "x" * 10_000)

    assert response.status_code == 401


def test_no_header_at_all_is_401_with_the_scheme_to_use(anonymous_api_client) -> None:
    response = anonymous_api_client.get(RUNS)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_another_scheme_is_not_taken_for_a_token(token) -> None:
    assert get_runs(f"Bearer {token.key}").status_code == 401


def test_authenticate_returns_the_user_or_none(token) -> None:
    assert tokens.authenticate(token.key) == token.user
    assert tokens.authenticate("") is None
    assert tokens.authenticate(token.key + "x") is None
    tokens.token_revoke(token=token.row)
    assert tokens.authenticate(token.key) is None
