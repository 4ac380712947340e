"""End to end: real HTTP to a real daphne, a real Celery worker over Redis, real runsc sandboxes.

Each test submits code the way a client does (REST with a token, or the browser form with a
session and CSRF) and follows the run until the worker has finished it.
"""

from __future__ import annotations

import base64
import re
import time

import pytest
import requests

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MiB = 1024 * 1024


@pytest.fixture
def api(e2e_user):
    session = requests.Session()
    session.headers.update(e2e_user.api_headers)
    yield session
    session.close()


def submit(api: requests.Session, stack, **body) -> dict:
    resp = api.post(stack.url("/api/v1/submissions/"), json=body, timeout=10)
    assert resp.status_code == 201, f"{resp.status_code} {resp.text[:1000]}\n{stack.logs()}"
    data = resp.json()
    assert data["status"] == "queued"
    assert data["api_url"] == stack.url(f"/api/v1/runs/{data['id']}/")
    return data


def test_hello_over_the_rest_api(stack, api, wait_for_run):
    created = submit(api, stack, name="hello", code='print("hello e2e")\n')

    run = wait_for_run(api, created["id"])

    assert (run["status"], run["reason"]) == ("succeeded", None), f"{run}\n{stack.logs()}"
    assert run["stdout"] == "hello e2e\n"
    assert run["stderr"] == ""
    assert run["exit_code"] == 0
    assert run["engine"] == "runsc"
    assert run["runtime_version"].startswith("runsc version")
    assert run["image_digest"].startswith("sha256:")
    assert run["started_at"] and run["finished_at"]


def test_the_api_refuses_a_request_without_a_token(stack):
    resp = requests.post(stack.url("/api/v1/submissions/"), json={"code": "print(1)"}, timeout=10)
    assert resp.status_code in (401, 403), resp.text


def test_an_infinite_loop_stops_at_the_wall_time_limit(stack, api, wait_for_run):
    created = submit(api, stack, code="while True:\n    pass\n", wall_seconds=2)
    assert created["limits"]["wall_seconds"] == 2

    run = wait_for_run(api, created["id"])

    assert (run["status"], run["reason"]) == ("failed", "timeout"), f"{run}\n{stack.logs()}"
    assert 1.9 <= run["run_seconds"] < 15, run


def test_a_1_gib_allocation_hits_a_128_mib_memory_limit(stack, api, wait_for_run):
    # b"\x01" * n writes every byte, so the pages are really used (a zeroed buffer might not be).
    created = submit(api, stack, code='data = b"\\x01" * (1024 ** 3)\nprint(len(data))\n', memory_mb=128)
    assert created["limits"]["memory_mb"] == 128

    run = wait_for_run(api, created["id"])

    assert (run["status"], run["reason"]) == ("failed", "memory_limit"), f"{run}\n{stack.logs()}"
    assert run["stdout"] == ""


def test_output_beyond_the_limit_is_cut_at_exactly_the_limit(stack, api, wait_for_run, settings):
    limit = settings.CRUCIBLE_OUTPUT_LIMIT_BYTES
    assert limit == MiB
    # 2 MiB in 1 KiB lines: small writes, so the known short-write problem of a single huge write
    # inside gVisor (tests/sandbox xfail) plays no part here.
    code = 'import sys\nline = "x" * 1023 + "\\n"\nfor _ in range(2048):\n    sys.stdout.write(line)\n'
    created = submit(api, stack, code=code)

    run = wait_for_run(api, created["id"])

    assert (run["status"], run["reason"]) == ("failed", "output_limit"), (run["detail"], stack.logs())
    stdout = base64.b64decode(run["stdout_base64"])
    assert len(stdout) == limit
    assert stdout == (b"x" * 1023 + b"\n") * (limit // 1024)
    assert len(run["stdout"]) == limit
    assert run["stdout_truncated"] is True
    assert run["stdout_bytes"] > limit


def _csrf_from(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, f"no CSRF token in the page:\n{html[:2000]}"
    return match.group(1)


def test_the_browser_form_over_http(stack, e2e_user):
    browser = requests.Session()
    try:
        # Log in as a browser does: the form sets the CSRF cookie, the POST carries the token.
        login_page = browser.get(stack.url("/login/"), timeout=10)
        assert login_page.status_code == 200
        assert "csrftoken" in browser.cookies
        resp = browser.post(
            stack.url("/login/"),
            data={
                "username": e2e_user.username,
                "password": e2e_user.password,
                "csrfmiddlewaretoken": _csrf_from(login_page.text),
                "next": "/submit/",
            },
            allow_redirects=False,
            timeout=10,
        )
        assert resp.status_code == 302, f"login failed: {resp.status_code}\n{resp.text[:2000]}"
        assert resp.headers["Location"] == "/submit/"
        assert "sessionid" in browser.cookies

        form_page = browser.get(stack.url("/submit/"), timeout=10)
        assert form_page.status_code == 200
        # multipart/form-data like the page's <form>, empty file input and limits included.
        fields = {
            "csrfmiddlewaretoken": _csrf_from(form_page.text),
            "name": "from the form",
            "code": 'print("hello form <b>&")\n',
            "wall_seconds": "",
            "memory_mb": "",
        }
        resp = browser.post(
            stack.url("/submit/"),
            files={**{k: (None, v) for k, v in fields.items()}, "file": ("", b"", "application/octet-stream")},
            headers={"Referer": stack.url("/submit/")},
            allow_redirects=False,
            timeout=10,
        )
        assert resp.status_code == 302, f"submit failed: {resp.status_code}\n{resp.text[:3000]}"
        match = re.fullmatch(r"/runs/(\d+)/", resp.headers["Location"])
        assert match, resp.headers["Location"]
        page_url = stack.url(resp.headers["Location"])

        # Poll the page as its <meta refresh> would, until the status badge is terminal.
        deadline = time.monotonic() + 30
        while True:
            page = browser.get(page_url, timeout=10)
            assert page.status_code == 200
            status = re.search(r'data-status="([a-z]+)"', page.text)
            assert status, page.text[:2000]
            if status.group(1) not in ("queued", "running"):
                break
            assert 'http-equiv="refresh"' in page.text  # a page of a live run refreshes itself
            assert time.monotonic() < deadline, f"still {status.group(1)} after 30s\n{stack.logs()}"
            time.sleep(0.2)

        assert status.group(1) == "succeeded", f"{page.text[:3000]}\n{stack.logs()}"
        assert 'http-equiv="refresh"' not in page.text
        assert "from the form" in page.text
        # The page gets its output over the websocket (tests/browser); the session can read it too.
        run_id = match.group(1)
        logs = browser.get(stack.url(f"/api/v1/runs/{run_id}/logs/?stream=stdout"), timeout=10)
        assert logs.content == b"hello form <b>&\n"
    finally:
        browser.close()


def test_the_worker_reports_its_heartbeat_for_the_ops_page(stack):
    from django.utils import timezone

    from evaluations.models import WorkerHeartbeat

    # Every ~10 s from the worker's main process (a test's teardown may have just emptied the table).
    deadline = time.monotonic() + 25
    beat = None
    while beat is None and time.monotonic() < deadline:
        beat = WorkerHeartbeat.objects.order_by("-last_seen").first()
        if beat is None:
            time.sleep(0.2)

    assert beat is not None, f"no heartbeat within 25 s\n{stack.logs()}"
    assert "@" in beat.hostname and beat.concurrency >= 1
    assert (timezone.now() - beat.last_seen).total_seconds() < 30
