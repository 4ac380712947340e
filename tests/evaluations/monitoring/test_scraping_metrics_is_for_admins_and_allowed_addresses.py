"""/metrics answers admins' API tokens and the scrape addresses an operator allows; anyone else,
researchers and admins' browser sessions included, gets 403."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from evaluations.models import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(make_user):
    from evaluations.accounts import services as account_services

    user = make_user("metrics-admin")
    account_services.user_set_role(actor=None, user=user, role=Role.ADMIN)
    return user


def test_an_admins_token_gets_the_metrics(anonymous_client, admin, make_token) -> None:
    key = make_token(admin).key
    resp = anonymous_client.get("/metrics", HTTP_AUTHORIZATION=f"Token {key}")

    assert resp.status_code == 200
    assert resp["Content-Type"].startswith("text/plain; version=")
    assert b"\ncrucible_runs_queued 0.0\n" in resp.content


def test_a_researchers_token_is_refused(anonymous_client, user, make_token) -> None:
    resp = anonymous_client.get("/metrics", HTTP_AUTHORIZATION=f"Token {make_token(user).key}")

    assert resp.status_code == 403
    assert b"crucible_" not in resp.content


def test_an_anonymous_client_is_refused(anonymous_client) -> None:
    assert anonymous_client.get("/metrics").status_code == 403


@pytest.mark.parametrize("header", ["Token not-a-key", "Token", "Token a b", "Bearer x", "Token \u00e9t\u00e9"])
def test_a_bad_or_unknown_token_is_refused_not_an_error(anonymous_client, header) -> None:
    assert anonymous_client.get("/metrics", HTTP_AUTHORIZATION=header).status_code == 403


def test_a_revoked_admin_token_is_refused(anonymous_client, admin, make_token) -> None:
    from django.utils import timezone

    issued = make_token(admin)
    issued.row.revoked_at = timezone.now()
    issued.row.save()

    assert anonymous_client.get("/metrics", HTTP_AUTHORIZATION=f"Token {issued.key}").status_code == 403


def test_an_admins_browser_session_is_refused(anonymous_client, admin) -> None:
    anonymous_client.force_login(admin)

    assert anonymous_client.get("/metrics").status_code == 403


def test_an_allowed_address_gets_the_metrics_without_a_token(anonymous_client, settings) -> None:
    settings.CRUCIBLE_METRICS_ALLOWED_ADDRESSES = ["192.0.2.7", "10.0.0.0/8"]

    assert anonymous_client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 200
    assert anonymous_client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert anonymous_client.get("/metrics", REMOTE_ADDR="192.0.2.8").status_code == 403


def test_no_address_is_allowed_by_default(anonymous_client, settings) -> None:
    assert settings.CRUCIBLE_METRICS_ALLOWED_ADDRESSES == []

    assert anonymous_client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_a_forwarded_address_counts_only_behind_trusted_proxies(anonymous_client, settings) -> None:
    settings.CRUCIBLE_METRICS_ALLOWED_ADDRESSES = ["192.0.2.7"]
    forwarded = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "192.0.2.7"}

    assert anonymous_client.get("/metrics", **forwarded).status_code == 403
    settings.CRUCIBLE_TRUSTED_PROXIES = 1
    assert anonymous_client.get("/metrics", **forwarded).status_code == 200


def test_a_malformed_allowed_address_is_a_configuration_error(anonymous_client, settings) -> None:
    settings.CRUCIBLE_METRICS_ALLOWED_ADDRESSES = ["10.0.0.300"]

    with pytest.raises(ImproperlyConfigured, match="10.0.0.300"):
        anonymous_client.get("/metrics")


def test_only_reads_are_answered(anonymous_client, admin, make_token) -> None:
    resp = anonymous_client.post("/metrics", HTTP_AUTHORIZATION=f"Token {make_token(admin).key}")

    assert resp.status_code == 405
