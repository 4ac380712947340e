"""Error pages look like the rest of the site (its stylesheet, header and navigation) and say what to do."""

from __future__ import annotations

import pytest
from django.test import Client

from evaluations.accounts import services as account_services
from evaluations.models import Role


@pytest.fixture
def researcher_browser(make_user) -> Client:
    user = make_user("ada")
    account_services.user_set_role(actor=None, user=user, role=Role.RESEARCHER)
    client = Client()
    client.force_login(user)
    return client


def test_a_researcher_opening_the_operations_page_gets_a_styled_403(researcher_browser) -> None:
    response = researcher_browser.get("/ops/")

    html = response.content.decode()
    assert response.status_code == 403
    assert "crucible.css" in html and 'href="/runs/"' in html  # the site's own page, with its nav
    assert "<h1>Not allowed</h1>" in html and "ada" in html and "ask one if you need this" in html


def test_a_form_sent_without_its_csrf_token_gets_a_styled_page_that_says_what_to_do(make_user) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_user("ada"))

    response = browser.post("/submit/", {"code": "print(1)"})

    html = response.content.decode()
    assert response.status_code == 403
    assert "crucible.css" in html and "reload the page and send it again" in html


def test_a_missing_page_is_styled_too(researcher_browser) -> None:
    response = researcher_browser.get("/no-such-page/")

    assert response.status_code == 404
    assert "crucible.css" in response.content.decode()


def test_a_server_error_page_is_styled_without_needing_the_database() -> None:
    from django.template.loader import render_to_string

    html = render_to_string("500.html")  # as Django's server_error renders it: no request, no context

    assert "crucible.css" in html and "Something went wrong on our side" in html
