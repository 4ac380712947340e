"""API tokens in Chromium: the new key is shown once, after a redirect (a reload makes no second token
and shows no key), copied with one click; revoking asks first."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_new_key_is_copied_shown_once_and_revoking_asks_first(logged_in) -> None:
    page = logged_in.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=logged_in.base_url)
    page.goto(logged_in.url("/profile/"))
    page.fill("#id_name", "laptop")
    page.click(".token-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/profile/tokens/\d+/created/$"))
    key = page.input_value("#new-key")
    assert key.startswith("cru_")

    page.click("#copy-key")
    page.wait_for_function("() => document.getElementById('copy-result').textContent.startsWith('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == key

    page.reload()  # the page that showed the key: it is gone now, and no second token was made
    page.wait_for_url(re.compile(r".*/profile/$"))
    assert key not in page.content() and "was shown once" in page.inner_text("main")
    row = page.locator("#tokens tr", has_text="laptop")
    assert row.count() == 1

    row.locator("button", has_text="Revoke").click()
    page.wait_for_selector("#confirm-dialog[open]")
    assert "laptop" in page.inner_text("#confirm-dialog")
    page.click("#confirm-dialog button[value=no]")
    assert page.locator("#confirm-dialog[open]").count() == 0
    assert "active" in row.inner_text()  # kept

    row.locator("button", has_text="Revoke").click()
    page.click("#confirm-dialog button[value=yes]")
    # The page still shows the earlier "shown once" flash until the revoke's answer replaces it.
    revoked = page.locator(".flash", has_text="is revoked")
    revoked.wait_for()
    assert "is revoked" in revoked.inner_text()
    assert "revoked" in page.locator("#tokens tr", has_text="laptop").inner_text()
