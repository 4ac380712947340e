"""Every page has a skip link to its content and marks the current page in the navigation."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("path, current", [("/runs/", "Runs"), ("/usage/", "Usage"), ("/submit/", "New run")])
def test_the_nav_marks_the_current_page_and_a_skip_link_leads_to_the_content(client, path, current) -> None:
    html = client.get(path).content.decode()

    assert html.index('class="skip-link" href="#main"') < html.index("<header")
    assert '<main id="main" tabindex="-1"' in html
    assert f'aria-current="page">{current}</a>' in html
    assert html.count('aria-current="page"') == 1
