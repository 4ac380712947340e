"""Fixtures for the browser tests: Debian's Chromium driven by Playwright (sync API) against the real
daphne + Celery worker + runsc stack of tests/e2e, plus a static route for the log pane fixture.

Run these in their own pytest invocation (`pytest tests/browser -p no:cacheprovider`): the sync
Playwright API refuses to run where an asyncio loop is running, as pytest-asyncio tests leave one.
No browser is downloaded: `playwright install` cannot reach its CDN here, Debian's package is used.
The site's pages forbid eval (Content-Security-Policy): give `wait_for_function` a function
("() => ..."); a bare expression is evaluated in the page by eval and refused.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# The stack, its environment, committed users and the run poller: the e2e tests' own fixtures.
from tests.e2e.conftest import e2e_user, stack, stack_env, wait_for_run  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_ORIGIN = "http://fixture.crucible.test"


@pytest.fixture
def browser():
    """Chromium for one test. Not session-wide: while the sync API is active an asyncio loop counts
    as running in this thread, and Django then refuses ORM calls (creating the test database, the
    test's users, the flush after a transactional test). Request it after the database fixtures."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@dataclass
class PageWatch:
    """What a page did that a test may want to assert on: script errors, dialogs, console errors."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    requests_elsewhere: list[str] = field(default_factory=list)


def _watch(page, allowed_origin: str) -> PageWatch:
    watch = PageWatch()
    page.on("pageerror", lambda exc: watch.errors.append(str(exc)))

    def on_dialog(dialog) -> None:
        watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("console", lambda msg: watch.console_errors.append(msg.text) if msg.type == "error" else None)

    # The pages must work with no network beyond the server: note any request that leaves it.
    def on_request(request) -> None:
        if not request.url.startswith((allowed_origin + "/", "data:", "blob:")):
            watch.requests_elsewhere.append(request.url)

    page.on("request", on_request)
    return watch


@dataclass
class LoggedIn:
    page: object
    watch: PageWatch
    base_url: str

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture
def logged_in(stack, e2e_user, browser) -> Iterator[LoggedIn]:  # noqa: F811 (browser last: see browser)
    """A fresh browser context logged in through the login form as `e2e_user`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    watch = _watch(page, stack.base_url)
    page.goto(stack.url("/login/"))
    page.fill("#id_username", e2e_user.username)
    page.fill("#id_password", e2e_user.password)
    page.click("form button[type=submit], form input[type=submit]")
    page.wait_for_url(re.compile(r".*/runs/$"))
    try:
        yield LoggedIn(page=page, watch=watch, base_url=stack.base_url)
        assert watch.errors == [], f"script errors on the page: {watch.errors}"
        assert watch.requests_elsewhere == [], f"requests beyond the server: {watch.requests_elsewhere}"
    finally:
        context.close()


def submit_over_api(server, user, code: str, name: str, **limits) -> int:
    """A run submitted as an API client would (token, JSON); returns its id."""
    import requests

    resp = requests.post(
        server.url("/api/v1/submissions/"),
        json={"name": name, "code": code, **limits},
        headers=user.api_headers,
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def api_run(server, user, run_id: int) -> dict:
    import requests

    resp = requests.get(server.url(f"/api/v1/runs/{run_id}/"), headers=user.api_headers, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture
def fixture_page(browser):
    """A page on a fake origin serving static/ and tests/browser/fixtures/ from the repository:
    the log pane alone, fed bytes by the test. No server needed."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    watch = _watch(page, FIXTURE_ORIGIN)

    def serve(route) -> None:
        path = route.request.url[len(FIXTURE_ORIGIN) :].split("?", 1)[0]
        base = REPO_ROOT if path.startswith("/static/") else REPO_ROOT / "tests" / "browser" / "fixtures"
        file = (base / path.lstrip("/")).resolve()
        if not file.is_file() or not file.is_relative_to(REPO_ROOT):
            route.fulfill(status=404, body="not found")
            return
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        route.fulfill(status=200, body=file.read_bytes(), headers={"Content-Type": content_type})

    page.route(f"{FIXTURE_ORIGIN}/**", serve)
    try:
        yield page, watch
        assert watch.errors == [], f"script errors on the page: {watch.errors}"
    finally:
        context.close()
