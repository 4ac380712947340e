"""The reconciler sends again a webhook try whose message was lost (docs/webhooks.md)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from evaluations.models import AuditEvent, RunStatus, WebhookDelivery
from evaluations.runs import reconciler
from evaluations.webhooks import services, tasks


@pytest.fixture
def scheduled(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr(
        tasks.deliver_webhook, "apply_async", lambda args, countdown=0, **kw: calls.append((*args, countdown))
    )
    return calls


def ended(make_run, user, *, ago: float, url: str = "https://example.org/h"):
    when = timezone.now() - timedelta(seconds=ago)
    run = make_run(user, status=RunStatus.SUCCEEDED, started_at=when, finished_at=when)
    run.submission.callback_url = url
    run.submission.save()
    return run


def tried(run, attempt: int, *, ago: float, status_code: int | None = 500) -> None:
    at = timezone.now() - timedelta(seconds=ago)
    url = "https://example.org/h"
    WebhookDelivery.objects.create(run=run, attempt=attempt, url=url, at=at, status_code=status_code)


def test_overdue_tries_are_the_next_after_a_failure_and_the_first_of_a_run_never_tried(make_run, user) -> None:
    waited_out = ended(make_run, user, ago=3600)
    tried(waited_out, 1, ago=3600)
    just_failed = ended(make_run, user, ago=60)
    tried(just_failed, 1, ago=10)
    delivered = ended(make_run, user, ago=3600)
    tried(delivered, 1, ago=3600, status_code=204)
    out_of_tries = ended(make_run, user, ago=7200)
    for attempt in range(1, 6):
        tried(out_of_tries, attempt, ago=7200)
    never_tried = ended(make_run, user, ago=600)
    ended(make_run, user, ago=10)  # may still be on its way
    ended(make_run, user, ago=600, url="")  # no callback of its own

    due = services.webhook_tries_overdue(now=timezone.now())

    assert sorted(due) == sorted([(waited_out.pk, 2), (never_tried.pk, 1)])


def test_the_reconciler_sends_them_and_says_so(make_run, user, scheduled, monkeypatch) -> None:
    monkeypatch.setattr(reconciler, "_last_webhook_check", None)
    run = ended(make_run, user, ago=600)

    decisions = reconciler.reconcile()

    assert (run.pk, 1, 0) in scheduled
    assert any(d.action == "reconcile_webhook" and d.run_id == run.pk for d in decisions)
    assert AuditEvent.objects.filter(action="reconcile_webhook", target=f"run:{run.pk}").exists()
