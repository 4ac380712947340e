"""Every page at a desktop width and on a 390 px phone (light and dark): nothing scrolls sideways, and axe-core (the
copy bundled by the axe-playwright-python package, no CDN) finds no WCAG 2.1 A/AA violation.

One stack and one set of runs for the whole module; each page is opened in a context of each width.
axe is injected with the page's Content-Security-Policy bypassed (it is a test tool, not our code)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from tests.browser.conftest import submit_over_api
from tests.e2e.conftest import TERMINAL

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# name: (width, height, colour scheme); the phone in dark mode checks the dark palette's contrast.
SCREENS = {"desktop": (1366, 850, "light"), "phone": (390, 844, "light"), "dark phone": (390, 844, "dark")}
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}


@dataclass
class Site:
    runs: list[int]


def axe_violations(page, exclude: list[str] | None = None) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    context = {"exclude": [[s] for s in exclude]} if exclude else None
    results = Axe().run(page, context=context, options=AXE_OPTIONS).response
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results["violations"]
    ]


def sideways_overflow(page) -> int:
    """How many CSS pixels the page is wider than the viewport (0 when it fits)."""
    return page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")


def pages_of(site: Site) -> dict[str, str]:
    a, b = site.runs
    return {
        "run list": "/runs/",
        "run page": f"/runs/{a}/",
        "compare": f"/runs/compare/?a={a}&b={b}",
        "new run": "/submit/",
        "usage": "/usage/",
        "profile": "/profile/",
        "not allowed": "/ops/",
        "not found": "/runs/987654321/",
        "api docs": "/api/docs/",
        "batches": "/batches/",
        "new batch": "/batches/new/",
    }


def test_every_page_fits_a_phone_and_has_no_accessibility_violations(stack, e2e_user, browser, wait_for_run) -> None:
    import requests

    session = requests.Session()
    first = submit_over_api(stack, e2e_user, "import sys\nprint('out')\nprint('err', file=sys.stderr)\n", "story")
    data = wait_for_run(session, first, e2e_user.api_headers)
    submission = data["submission"]["id"]
    # A second run of the same submission: the run page lists it, and the two can be compared.
    resp = requests.post(
        stack.url(f"/api/v1/submissions/{submission}/runs/"), json={}, headers=e2e_user.api_headers, timeout=10
    )
    assert resp.status_code == 201, resp.text
    second = resp.json()["id"]
    wait_for_run(session, second, e2e_user.api_headers)
    assert data["status"] in TERMINAL
    site = Site(runs=[first, second])

    problems: list[str] = []
    for width_name, (width, height, scheme) in SCREENS.items():
        context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme, bypass_csp=True)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda exc, where=width_name: problems.append(f"script error @{where}: {exc}"))
        page.goto(stack.url("/login/"))
        problems += [f"login @{width_name}: {v}" for v in axe_violations(page)]
        if sideways_overflow(page) > 0:
            problems.append(f"login @{width_name}: {sideways_overflow(page)} px sideways")
        page.fill("#id_username", e2e_user.username)
        page.fill("#id_password", e2e_user.password)
        page.click("form button[type=submit]")
        page.wait_for_url(re.compile(r".*/runs/$"))
        for name, path in pages_of(site).items():
            page.goto(stack.url(path))
            page.wait_for_load_state("load")
            if name == "run page":
                page.wait_for_function("() => document.getElementById('connection').dataset.state === 'done'")
            over = sideways_overflow(page)
            if over > 0:
                problems.append(f"{name} @{width_name}: {over} px sideways")
            exclude = ["#swagger-ui"] if name == "api docs" else None  # Swagger UI's own markup is not ours
            problems += [f"{name} @{width_name}: {v}" for v in axe_violations(page, exclude)]
        # The page that shows a new API token's key once.
        page.goto(stack.url("/profile/"))
        page.fill("#id_name", f"survey {width_name}")
        page.click(".token-form button[type=submit]")
        page.wait_for_url(re.compile(r".*/created/$"))
        if sideways_overflow(page) > 0:
            problems.append(f"new token @{width_name}: {sideways_overflow(page)} px sideways")
        problems += [f"new token @{width_name}: {v}" for v in axe_violations(page)]
        context.close()

    assert problems == [], "\n".join(problems)
