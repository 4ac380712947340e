"""A queued run's detail says what it waits for when no worker takes runs."""

from __future__ import annotations

from django.utils import timezone

from evaluations.runs import lifecycle


def test_a_queued_run_says_no_worker_is_available_until_one_is(api_client, token, make_run) -> None:
    run = make_run(token.user)

    before = api_client.get(f"/api/v1/runs/{run.pk}/").json()
    lifecycle.worker_heartbeat(hostname="celery@up", started=timezone.now(), concurrency=2)
    after = api_client.get(f"/api/v1/runs/{run.pk}/").json()

    assert before["status"] == "queued" and before["waiting"].startswith("no worker is available")
    assert after["waiting"] is None
