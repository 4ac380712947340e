"""Celery tasks of webhooks: each takes ids and calls one service (imported inside the body)."""

from __future__ import annotations

from celery import shared_task

# A try waits for the receiver at most CRUCIBLE_WEBHOOK_TIMEOUT_SECONDS; this only catches a hang.
_LIMIT = 120


@shared_task(name="evaluations.webhook_deliver", soft_time_limit=_LIMIT, time_limit=_LIMIT + 30)
def deliver_webhook(run_id: int, attempt: int) -> None:
    from evaluations.webhooks import services

    services.webhook_attempt(run_id=run_id, attempt=attempt)
