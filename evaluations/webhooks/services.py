"""Webhooks: when a run ends, its callback URL gets the run (the API's JSON) in a signed POST, from
a Celery task that tries again with growing waits. Every try is recorded (docs/webhooks.md)."""

from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from evaluations.accounts import audit
from evaluations.accounts.quotas import owner_lock
from evaluations.models import TERMINAL_STATUSES, Profile, Run, WebhookDelivery
from evaluations.webhooks import selectors
from evaluations.webhooks.delivery import webhook_post
from evaluations.webhooks.guard import WebhookRefused, url_check
from evaluations.webhooks.tasks import deliver_webhook

logger = logging.getLogger(__name__)


def callback_url_clean(url: str | None, *, field: str = "callback_url") -> str:
    """A callback URL as given ("" for none): its form only (where it resolves is checked at each try)."""
    if not url:
        return ""
    try:
        url_check(url)
    except WebhookRefused as exc:
        raise ValidationError({field: str(exc)}) from None
    return url


def callback_ready(*, owner, url: str, field: str = "callback_url") -> None:
    """A callback needs the owner's secret, to sign what is sent: ValidationError until they made one."""
    if url and not Profile.objects.filter(user_id=owner.pk).exclude(webhook_secret="").exists():
        raise ValidationError(
            {field: "make a webhook secret first (on /profile/ or with POST /api/v1/webhook-secret/): we sign with it"}
        )


def backoff_seconds(attempt: int) -> float:
    """The wait before try `attempt` + 1: CRUCIBLE_WEBHOOK_BACKOFF_SECONDS × 3^(attempt − 1)."""
    return settings.CRUCIBLE_WEBHOOK_BACKOFF_SECONDS * 3 ** (attempt - 1)


def webhook_schedule_on_commit(run_id: int) -> None:
    """The run ended: once that is committed, its first try if it has a callback URL."""
    webhooks_schedule_on_commit([run_id])


def webhooks_schedule_on_commit(run_ids: list[int]) -> None:
    """webhook_schedule_on_commit for runs that ended together (e.g. a batch cancelled), in one query
    (the URLs selectors.webhook_url_for would find)."""

    def schedule() -> None:
        with_url = Q(batch__callback_url__gt="") | Q(submission__callback_url__gt="")
        with_url |= Q(submission__owner__profile__webhook_url__gt="")
        for run_id in Run.objects.filter(with_url, pk__in=run_ids).values_list("pk", flat=True):
            _send(run_id, 1, countdown=0)

    transaction.on_commit(schedule)


def _send(run_id: int, attempt: int, countdown: float) -> None:
    try:
        deliver_webhook.apply_async((run_id, attempt), countdown=countdown, task_id=f"webhook-{run_id}-{attempt}")
    except Exception as exc:  # kombu's or redis's errors, or OSError: the run itself is fine
        logger.warning("run %s: could not queue webhook try %s (%s)", run_id, attempt, exc)


class _SiteRequest:
    """What run_output needs of a request, for a body built outside one: the site's own URLs."""

    def build_absolute_uri(self, location: str) -> str:
        return settings.CRUCIBLE_SITE_URL.rstrip("/") + location


def webhook_attempt(*, run_id: int, attempt: int) -> WebhookDelivery | None:
    """Try `attempt` of telling the run's callback URL; the row recorded, or None if there was
    nothing to do (no URL, delivered already, this try already made by another delivery)."""
    from evaluations.api.serializers import run_output

    run = Run.objects.select_related("submission", "batch").filter(pk=run_id).first()
    if run is None or not run.is_terminal:
        return None
    url = selectors.webhook_url_for(run)
    if not url:
        return None
    tried = WebhookDelivery.objects.filter(run=run)
    if any(d.delivered for d in tried):
        return None
    try:
        with transaction.atomic():
            row = WebhookDelivery.objects.create(run=run, attempt=attempt, url=url, at=timezone.now())
    except IntegrityError:
        return None  # a redelivered message: this try was made
    secret = Profile.objects.filter(user_id=run.submission.owner_id).values_list("webhook_secret", flat=True).first()
    body = json.dumps(run_output(run, _SiteRequest()), cls=DjangoJSONEncoder).encode()
    outcome = webhook_post(
        url=url,
        body=body,
        headers={"X-Crucible-Event": "run.ended", "X-Crucible-Delivery": f"{run_id}-{attempt}"},
        secret=secret or "",
        allow_private=settings.CRUCIBLE_WEBHOOK_ALLOW_PRIVATE,
        timeout=settings.CRUCIBLE_WEBHOOK_TIMEOUT_SECONDS,
        max_response_bytes=settings.CRUCIBLE_WEBHOOK_MAX_RESPONSE_BYTES,
    )
    if not outcome.delivered and not outcome.error:
        outcome_error = f"answered {outcome.status_code}, not 2xx"
    else:
        outcome_error = outcome.error
    WebhookDelivery.objects.filter(pk=row.pk).update(
        status_code=outcome.status_code, error=outcome_error[:500], duration_seconds=outcome.duration_seconds
    )
    row.refresh_from_db()
    if not outcome.delivered:
        logger.warning("run %s: webhook try %s failed: %s", run_id, attempt, outcome_error)
        if attempt < settings.CRUCIBLE_WEBHOOK_TRIES:
            _send(run_id, attempt + 1, countdown=backoff_seconds(attempt))
    return row


# A try's message may still be on its way (queued, or held by a busy worker) this long after it was due.
OVERDUE_GRACE_SECONDS = 120.0
# Tries are looked for among runs that ended this recently.
OVERDUE_LOOKBACK = timedelta(days=1)


def webhook_tries_overdue(*, now: datetime) -> list[tuple[int, int]]:
    """(run id, try) of tries that are due but whose message seems lost (Redis restarted, a send
    that failed): after a failed try, the next once its wait and the grace are over; a run whose
    batch or submission names a callback URL but that has no try, once the grace is over. Sending one
    again is harmless: a try's row is unique, so a late original posts nothing."""
    grace = timedelta(seconds=OVERDUE_GRACE_SECONDS)
    latest: dict[int, tuple[int, datetime]] = {}
    delivered: set[int] = set()
    rows = WebhookDelivery.objects.filter(at__gte=now - OVERDUE_LOOKBACK).order_by("run_id", "attempt")
    for run_id, attempt, at, code in rows.values_list("run_id", "attempt", "at", "status_code"):
        latest[run_id] = (attempt, at)
        if code is not None and 200 <= code < 300:
            delivered.add(run_id)
    due = [
        (run_id, attempt + 1)
        for run_id, (attempt, at) in latest.items()
        if run_id not in delivered
        and attempt < settings.CRUCIBLE_WEBHOOK_TRIES
        and at + timedelta(seconds=backoff_seconds(attempt)) + grace < now
    ]
    never = (
        Run.objects.filter(
            status__in=TERMINAL_STATUSES,
            finished_at__gte=now - OVERDUE_LOOKBACK,
            finished_at__lt=now - grace,
            webhook_deliveries__isnull=True,
        )
        .filter(Q(batch__callback_url__gt="") | Q(submission__callback_url__gt=""))
        .values_list("pk", flat=True)
    )
    return due + [(run_id, 1) for run_id in never]


def webhook_try_resend(*, run_id: int, attempt: int) -> None:
    _send(run_id, attempt, countdown=0)


@transaction.atomic
def webhook_settings_set(*, user, url: str, request=None) -> None:
    """The user's default callback URL for runs that name none ("" for none)."""
    clean = callback_url_clean(url, field="webhook_url")
    callback_ready(owner=user, url=clean, field="webhook_url")
    owner_lock(user)
    Profile.objects.filter(user_id=user.pk).update(webhook_url=clean)
    audit.audit_record(actor=user, action=audit.WEBHOOK_CHANGE, target=f"user:{user.get_username()}", request=request)


@transaction.atomic
def webhook_secret_rotate(*, user, request=None) -> str:
    """A new signing secret for the user's deliveries, returned once (the old one stops at once)."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    owner_lock(user)  # makes the profile row if it is missing
    Profile.objects.filter(user_id=user.pk).update(webhook_secret=secret)
    audit.audit_record(actor=user, action=audit.WEBHOOK_SECRET, target=f"user:{user.get_username()}", request=request)
    return secret
