"""Reads on webhooks: where a run's end is told, and the tries so far."""

from __future__ import annotations

from evaluations.models import Profile, Run, WebhookDelivery


def webhook_url_for(run: Run) -> str:
    """The batch's callback URL, else the submission's, else the owner's default ("" for none)."""
    batch = run.batch if run.batch_id else None
    if batch is not None and batch.callback_url:
        return batch.callback_url
    if run.submission.callback_url:
        return run.submission.callback_url
    return Profile.objects.filter(user_id=run.submission.owner_id).values_list("webhook_url", flat=True).first() or ""


def webhook_deliveries(*, run: Run) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(run=run).order_by("attempt"))
