"""The login page, and pages that send anonymous visitors to it."""

from __future__ import annotations

import pytest


def test_the_login_page_renders_a_form_with_a_csrf_token(anonymous_client) -> None:
    response = anonymous_client.get("/login/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="username"' in html and 'name="password"' in html
    assert "csrfmiddlewaretoken" in html


def test_logging_in_leads_to_the_run_list(anonymous_client, user, password) -> None:
    response = anonymous_client.post("/login/", {"username": user.username, "password": password})

    assert response.status_code == 302
    assert response["Location"] == "/runs/"
    assert anonymous_client.get("/runs/").status_code == 200


def test_a_wrong_password_shows_an_error_and_logs_nobody_in(anonymous_client, user) -> None:
    response = anonymous_client.post("/login/", {"username": user.username, "password": "wrong"})

    assert response.status_code == 200
    assert "did not match" in response.content.decode()
    assert anonymous_client.get("/runs/").status_code == 302


def test_logging_in_returns_to_the_page_asked_for(anonymous_client, user, password) -> None:
    response = anonymous_client.post(
        "/login/?next=/submit/", {"username": user.username, "password": password, "next": "/submit/"}
    )

    assert response["Location"] == "/submit/"


def test_login_refuses_to_redirect_to_another_site(anonymous_client, user, password) -> None:
    response = anonymous_client.post(
        "/login/", {"username": user.username, "password": password, "next": "https://evil.example/"}
    )

    assert response.status_code == 302
    assert response["Location"] == "/runs/"


@pytest.mark.parametrize("path", ["/runs/", "/submit/", "/runs/1/"])
def test_anonymous_visitors_are_sent_to_the_login_page(anonymous_client, path) -> None:
    response = anonymous_client.get(path)

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={path}"


def test_the_front_page_leads_to_the_run_list(client) -> None:
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/runs/"


def test_logging_out_ends_the_session(client) -> None:
    response = client.post("/logout/")

    assert response.status_code == 302
    assert client.get("/runs/").status_code == 302
