"""The batch page in Chromium against the real stack: its grid and counts follow the runs live."""

from __future__ import annotations

import pytest
import requests

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_grid_and_counts_follow_a_batch_to_its_end_without_reloading(logged_in, stack, e2e_user) -> None:
    page = logged_in.page
    resp = requests.post(
        stack.url("/api/v1/batches/"),
        json={
            "name": "grid",
            "code": "import sys, time\ntime.sleep(2)\nsys.exit(int(sys.argv[1]))\n",
            "inputs": [{"argv": ["0"]}, {"argv": ["0"]}, {"argv": ["3"]}],
        },
        headers=e2e_user.api_headers,
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    batch_id = resp.json()["id"]
    page.goto(logged_in.url(f"/batches/{batch_id}/"))
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    assert page.inner_text("[data-count=succeeded]") == "0"  # each run takes 2 s: none has ended yet

    page.wait_for_function(
        "() => document.querySelectorAll('#batch-grid .cell.status-succeeded').length === 2"
        " && document.querySelectorAll('#batch-grid .cell.status-failed').length === 1",
        timeout=30_000,
    )
    page.wait_for_function(
        "() => document.querySelector('[data-count=succeeded]').textContent === '2'"
        " && document.querySelector('[data-count=failed]').textContent === '1'",
        timeout=5_000,
    )

    assert page.evaluate("window.sameDocument") is True
    assert page.get_attribute("#connection", "data-state") == "live"
