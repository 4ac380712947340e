"""Account forms (evaluations/accounts/forms.py: sign-up, naming an API token), fed any values by
hypothesis through their pages: a 4xx or a valid result, never a 500 or an exception."""

from __future__ import annotations

import pytest
from django.test import Client
from hypothesis import given

from tests.support.fuzz import FUZZ, form_fields_of

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@FUZZ
@given(fields=form_fields_of(["username", "email", "password1", "password2"]))
def test_signing_up(settings, fields) -> None:
    settings.CRUCIBLE_ALLOW_SIGNUP = True

    response = Client().post("/signup/", fields)

    assert response.status_code in (200, 302) or 400 <= response.status_code < 500, response.status_code


@FUZZ
@given(fields=form_fields_of(["name"]))
def test_naming_an_api_token(user, fields) -> None:
    client = Client()
    client.force_login(user)

    response = client.post("/profile/tokens/", fields)

    assert response.status_code == 302 or 400 <= response.status_code < 500, response.status_code
