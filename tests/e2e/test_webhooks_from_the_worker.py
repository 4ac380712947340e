"""Webhooks on the real stack: a run submitted with a callback URL is POSTed, signed, by the worker's
Celery task when it ends, and tried again after a failure (a receiver on loopback, allowed here)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
import requests

from tests.evaluations.webhooks.test_delivering_webhooks import Receiver
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def webhook_stack(stack_env, tmp_path_factory):
    import redis

    env = {**stack_env, "CRUCIBLE_WEBHOOK_ALLOW_PRIVATE": "1", "CRUCIBLE_WEBHOOK_BACKOFF_SECONDS": "0.5"}
    redis.Redis.from_url(env["CRUCIBLE_REDIS_URL"], socket_connect_timeout=2).flushdb()
    with Stack(env, log_dir=tmp_path_factory.mktemp("e2e-webhooks"), concurrency=2) as running:
        yield running


def test_a_finished_run_is_posted_signed_and_a_failed_try_is_made_again(webhook_stack, e2e_user) -> None:
    receiver = Receiver()
    receiver.status = 500  # the first try fails
    http = requests.Session()
    http.headers.update(e2e_user.api_headers)
    try:
        secret = http.post(webhook_stack.url("/api/v1/webhook-secret/"), timeout=10).json()["secret"]
        run = http.post(
            webhook_stack.url("/api/v1/submissions/"),
            json={"code": "print('done')", "callback_url": receiver.url},
            timeout=10,
        )
        assert run.status_code == 201, run.text
        deadline = time.monotonic() + 30
        while not receiver.requests:
            assert time.monotonic() < deadline, webhook_stack.logs()
            time.sleep(0.1)
        receiver.status = 200
        while len(receiver.requests) < 2:
            assert time.monotonic() < deadline, webhook_stack.logs()
            time.sleep(0.1)
        time.sleep(0.5)  # the second try's outcome is stored after the answer
        deliveries = http.get(webhook_stack.url(f"/api/v1/runs/{run.json()['id']}/"), timeout=10).json()[
            "webhook_deliveries"
        ]
    finally:
        receiver.close()

    got = receiver.requests[1]
    signed = got["headers"]["X-Crucible-Timestamp"].encode() + b"." + got["body"]
    mac = hmac.new(secret.encode(), signed, hashlib.sha256)
    assert got["headers"]["X-Crucible-Signature"] == f"sha256={mac.hexdigest()}"
    body = json.loads(got["body"])
    assert body["status"] == "succeeded" and body["stdout"] == "done\n"
    assert [(d["attempt"], d["status_code"]) for d in deliveries] == [(1, 500), (2, 200)]
    assert len(receiver.requests) == 2
