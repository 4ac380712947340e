"""The run list in Chromium against the real stack: statuses change live, without a reload."""

from __future__ import annotations

import pytest

from tests.browser.conftest import submit_over_api

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def badge(page, run_id: int) -> str | None:
    return page.evaluate(
        "(id) => document.querySelector(`tr[data-run-id='${id}'] .badge`)?.dataset.status ?? null", run_id
    )


def test_the_list_follows_a_run_from_queued_to_succeeded_without_reloading(logged_in, stack, e2e_user) -> None:
    page = logged_in.page
    before = submit_over_api(stack, e2e_user, "print('before')", "before")
    page.goto(logged_in.url("/runs/"))
    page.wait_for_function("() => document.getElementById('connection').dataset.state === 'live'")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads

    run_id = submit_over_api(stack, e2e_user, "import time\ntime.sleep(2)\nprint('done')\n", "<i>slow</i>")

    # A run submitted after the page loaded gets its row (from the server's own table markup).
    page.wait_for_selector(f"tr[data-run-id='{run_id}']", timeout=10_000)
    page.wait_for_function(
        "(id) => document.querySelector(`tr[data-run-id='${id}'] .badge`).dataset.status === 'running'",
        arg=run_id,
        timeout=15_000,
    )
    page.wait_for_function(
        "(id) => document.querySelector(`tr[data-run-id='${id}'] .badge`).dataset.status === 'succeeded'",
        arg=run_id,
        timeout=20_000,
    )
    row = f"tr[data-run-id='{run_id}']"
    assert page.inner_text(f"{row} .exit-cell") == "0"
    assert page.inner_text(f"{row} .time-cell").endswith(" s")
    assert "<i>slow</i>" in page.inner_text(row)  # the name is escaped text
    assert page.locator(f"{row} i").count() == 0
    assert badge(page, before) == "succeeded"
    assert page.evaluate("window.sameDocument") is True
