"""Webhooks against a real HTTP server on loopback (CRUCIBLE_WEBHOOK_ALLOW_PRIVATE on): a run's end
is POSTed signed, failures are tried again with growing waits and every try is recorded; the guard
refuses loopback, link-local and private addresses while the setting is off."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evaluations.models import Run, RunStatus, WebhookDelivery
from evaluations.runs import lifecycle
from evaluations.webhooks import guard, services, tasks


class Receiver:
    """A loopback HTTP server that records what it is sent and answers as told."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        self.delay = 0.0
        self.body = b"ok"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                receiver.requests.append({"headers": dict(self.headers), "body": self.rfile.read(length)})
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                try:
                    self.wfile.write(receiver.body)
                except OSError:
                    pass  # the client stopped reading: that is the point of some tests

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?x=1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.CRUCIBLE_WEBHOOK_ALLOW_PRIVATE = True
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def scheduled(monkeypatch) -> list[tuple]:
    """The webhook tries queued: (run id, attempt, countdown); nothing reaches a broker."""
    calls: list[tuple] = []
    monkeypatch.setattr(
        tasks.deliver_webhook, "apply_async", lambda args, countdown=0, **kw: calls.append((*args, countdown))
    )
    return calls


@pytest.fixture
def secret(user) -> str:
    return services.webhook_secret_rotate(user=user)


def ended_run(make_run, user, url: str) -> Run:
    run = make_run(user, status=RunStatus.SUCCEEDED, exit_code=0, stdout=b"hi\n")
    run.submission.callback_url = url
    run.submission.save()
    return run


def test_a_run_that_ends_is_posted_signed_with_the_users_secret(receiver, make_run, user, secret, scheduled):
    run = ended_run(make_run, user, receiver.url)

    row = services.webhook_attempt(run_id=run.pk, attempt=1)

    assert row.status_code == 200 and row.delivered and row.error == ""
    [got] = receiver.requests
    headers, body = got["headers"], got["body"]
    expected = hmac.new(secret.encode(), headers["X-Crucible-Timestamp"].encode() + b"." + body, hashlib.sha256)
    assert headers["X-Crucible-Signature"] == f"sha256={expected.hexdigest()}"
    assert abs(int(headers["X-Crucible-Timestamp"]) - time.time()) < 60
    payload = json.loads(body)
    assert payload["id"] == run.pk and payload["status"] == "succeeded" and payload["stdout"] == "hi\n"
    assert scheduled == []  # delivered: no further try


def test_ending_a_run_queues_its_first_try_only_when_it_has_a_callback(
    make_run, user, secret, scheduled, django_capture_on_commit_callbacks
):
    with_url = make_run(user, status=RunStatus.RUNNING)
    with_url.submission.callback_url = "https://example.org/hook"
    with_url.submission.save()
    without = make_run(user, status=RunStatus.RUNNING)
    fields = lifecycle.error_fields(reason="sandbox_error", detail="x")

    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.run_end(run_id=with_url.pk, fields=fields)
        lifecycle.run_end(run_id=without.pk, fields=fields)

    assert scheduled == [(with_url.pk, 1, 0)]


def test_a_failing_receiver_is_tried_five_times_over_more_than_ten_minutes(receiver, make_run, user, secret, scheduled):
    receiver.status = 500
    run = ended_run(make_run, user, receiver.url)

    for attempt in range(1, 6):
        services.webhook_attempt(run_id=run.pk, attempt=attempt)

    rows = list(WebhookDelivery.objects.filter(run=run))
    assert [(r.attempt, r.status_code) for r in rows] == [(n, 500) for n in range(1, 6)]
    assert all("not 2xx" in r.error for r in rows)
    waits = [countdown for _, _, countdown in scheduled]
    assert [attempt for _, attempt, _ in scheduled] == [2, 3, 4, 5]  # none after the fifth
    assert waits == sorted(waits) and sum(waits) >= 600
    assert len(receiver.requests) == 5


def test_a_redelivered_try_posts_nothing_twice(receiver, make_run, user, secret, scheduled):
    run = ended_run(make_run, user, receiver.url)
    receiver.status = 503
    services.webhook_attempt(run_id=run.pk, attempt=1)

    again = services.webhook_attempt(run_id=run.pk, attempt=1)

    assert again is None and len(receiver.requests) == 1


def test_a_slow_receiver_times_out_and_a_huge_answer_is_not_read_whole(receiver, make_run, user, secret, settings):
    settings.CRUCIBLE_WEBHOOK_TIMEOUT_SECONDS = 0.5
    receiver.delay = 3
    slow = services.webhook_attempt(run_id=ended_run(make_run, user, receiver.url).pk, attempt=1)
    receiver.delay, receiver.body = 0, b"x" * (50 * 1024 * 1024)

    started = time.monotonic()
    huge = services.webhook_attempt(run_id=ended_run(make_run, user, receiver.url).pk, attempt=1)

    assert slow.status_code is None and "timed out" in slow.error and slow.duration_seconds < 2
    assert huge.delivered and time.monotonic() - started < 2


def test_loopback_is_refused_while_the_setting_is_off(receiver, make_run, user, secret, settings, scheduled):
    settings.CRUCIBLE_WEBHOOK_ALLOW_PRIVATE = False
    run = ended_run(make_run, user, receiver.url)

    row = services.webhook_attempt(run_id=run.pk, attempt=1)

    assert row.status_code is None and "127.0.0.1, a loopback address" in row.error
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://localhost/x", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.1.2.3/", "private"),
        ("http://192.168.0.1:8080/", "private"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://0.0.0.0/", "unspecified"),
        ("ftp://example.org/", "http"),
        ("http://user:pw@example.org/", "password"),
        ("http:///nohost", "host"),
    ],
)
def test_the_guard_refuses_what_is_not_a_public_http_address(url, problem):
    with pytest.raises(guard.WebhookRefused, match=problem):
        guard.target_resolve(url, allow_private=False)


def test_the_guard_lets_a_public_address_through():
    target = guard.target_resolve("https://93.184.215.14:8443/hook?a=b", allow_private=False)

    assert target.addresses == ("93.184.215.14",) and target.port == 8443 and target.path == "/hook?a=b"


def test_a_callback_needs_a_secret_and_a_valid_url(api_client, user, no_worker):
    submit = "/api/v1/submissions/"
    no_secret = api_client.post(submit, {"code": "print(1)", "callback_url": "https://example.org/h"}, format="json")
    services.webhook_secret_rotate(user=user)
    bad = api_client.post(submit, {"code": "print(1)", "callback_url": "gopher://x"}, format="json")
    ok = api_client.post(submit, {"code": "print(1)", "callback_url": "https://example.org/h"}, format="json")

    assert no_secret.status_code == 400 and "webhook secret" in no_secret.json()["callback_url"][0]
    assert bad.status_code == 400 and "http" in bad.json()["callback_url"][0]
    assert ok.status_code == 201 and ok.json()["webhook_deliveries"] == []
    assert Run.objects.get(pk=ok.json()["id"]).submission.callback_url == "https://example.org/h"


def test_deliveries_show_on_the_run_page_and_in_the_api(receiver, make_run, user, secret, client, api_client):
    run = ended_run(make_run, user, receiver.url)
    services.webhook_attempt(run_id=run.pk, attempt=1)

    page = client.get(f"/runs/{run.pk}/").content.decode()
    api = api_client.get(f"/api/v1/runs/{run.pk}/").json()

    assert 'id="webhook-deliveries"' in page and receiver.url.replace("&", "&amp;") in page
    assert api["webhook_deliveries"][0]["status_code"] == 200 and api["webhook_deliveries"][0]["delivered"]


def test_the_secret_is_shown_once_and_signs_from_then_on(client, user):
    first = client.post("/profile/webhook/secret/")
    profile = client.get("/profile/")

    secret = user.profile.__class__.objects.get(user=user).webhook_secret
    assert first.status_code == 200 and secret in first.content.decode()
    assert "no-store" in first["Cache-Control"] or "no-cache" in first["Cache-Control"]
    assert secret not in profile.content.decode() and "You have a signing secret" in profile.content.decode()


def test_the_default_callback_is_set_on_the_profile_and_used_for_runs_without_one(client, user, make_run, secret):
    response = client.post("/profile/webhook/", {"webhook_url": "https://example.org/default"})
    run = make_run(user)

    from evaluations.webhooks.selectors import webhook_url_for

    assert response.status_code == 302
    assert webhook_url_for(run) == "https://example.org/default"


def test_cancelling_a_batch_queues_a_try_for_each_cancelled_run(
    api_client, user, secret, scheduled, no_worker, django_capture_on_commit_callbacks
):
    body = {"code": "print(1)", "inputs": [{}] * 3, "callback_url": "https://example.org/h"}
    batch = api_client.post("/api/v1/batches/", body, format="json").json()

    with django_capture_on_commit_callbacks(execute=True):
        api_client.post(f"/api/v1/batches/{batch['id']}/cancel/")

    assert sorted(run_id for run_id, _, _ in scheduled) == sorted(run["id"] for run in batch["runs"])
    assert {attempt for _, attempt, _ in scheduled} == {1}


def test_others_who_read_the_run_see_only_the_callbacks_scheme_and_host(
    make_run, user, make_user, secret, settings, make_token
):
    from django.test import Client
    from rest_framework.test import APIClient

    from evaluations.accounts import services as account_services
    from evaluations.models import Role

    settings.CRUCIBLE_WEBHOOK_ALLOW_PRIVATE = False  # refused at once: no server needed
    run = ended_run(make_run, user, "https://hooks.example.org/services/T0/B0/s3cr3t?token=abc")
    services.webhook_attempt(run_id=run.pk, attempt=1)
    reviewer = make_user("rita")
    account_services.user_set_role(actor=None, user=reviewer, role=Role.REVIEWER)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {make_token(reviewer).key}")
    page = Client()
    page.force_login(reviewer)

    seen = api.get(f"/api/v1/runs/{run.pk}/").json()["webhook_deliveries"][0]["url"]
    html = page.get(f"/runs/{run.pk}/").content.decode()

    assert seen == "https://hooks.example.org/…"
    assert "s3cr3t" not in html and "hooks.example.org/…" in html
