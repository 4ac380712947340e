"""The reconciler: every few seconds, independent of workers, it makes the database and the broker
agree. It stores results workers handed over, ends runs whose worker is lost, and sends again the
messages of queued runs that have none waiting. Each decision is logged and audited (the ops page
shows them). Every step is a conditional UPDATE, so several reconcilers may run at once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from django.db.models import Q
from django.utils import timezone

from evaluations.accounts import audit
from evaluations.models import Run
from evaluations.monitoring.logging import log_context
from evaluations.runs import broker, lifecycle, scheduling, selectors
from evaluations.webhooks import services as webhook_services

logger = logging.getLogger(__name__)

# A queued run's message may be on its way to the queue (or in a worker's hands) for this long.
RESEND_AFTER_SECONDS = 5.0


@dataclass(frozen=True)
class Decision:
    action: str  # one of audit.RECONCILE_ACTIONS
    run_id: int
    why: str


# Lost webhook tries are looked for this often (their waits are minutes long).
WEBHOOK_CHECK_SECONDS = 60.0
_NOT_YET = "(not told yet)"
_last_webhook_check: datetime | None = None
_last_unavailable: str | None = _NOT_YET  # what this process last told queued runs they wait for


def reconcile(*, now: datetime | None = None, judge_leases: bool = True) -> list[Decision]:
    """One pass; what it decided, in order. The pass's lines share a task id of their own.

    judge_leases: False while the database has just come back (lapsed leases are then no evidence).
    """
    with log_context(task_id=f"reconcile-{uuid.uuid4().hex[:12]}"):
        return _reconcile(now or timezone.now(), judge_leases)


def _reconcile(now: datetime, judge_leases: bool) -> list[Decision]:
    decisions = _store_handed_over_results()  # first: a run keeps its true result rather than worker_lost
    if judge_leases:
        decisions += _end_lost_runs(now)
    decisions += _resend_lost_messages(now)
    decisions += _resend_lost_webhook_tries(now)
    global _last_unavailable
    unavailable = selectors.workers_unavailable(now=now)
    if unavailable != _last_unavailable or _queue_moved_untold():  # pages of queued runs hear it
        _last_unavailable = unavailable
        lifecycle.publish_queue_positions()
    owners = selectors.run_owner_names(run_ids=[d.run_id for d in decisions]) if decisions else {}
    for d in decisions:
        with log_context(run_id=d.run_id, user=owners.get(d.run_id)):
            logger.warning("reconciler: run %s: %s (%s)", d.run_id, d.action, d.why)
            audit.audit_record(actor=None, action=d.action, target=f"run:{d.run_id}", data={"why": d.why})
    return decisions


def _queue_moved_untold() -> bool:
    try:
        return broker.queue_moved_take()
    except redis.RedisError:
        return False


def _store_handed_over_results() -> list[Decision]:
    try:
        results = broker.results_handed_over()
    except redis.RedisError as exc:
        logger.warning("reconciler: cannot read handed-over results (%s)", exc)
        return []
    decisions = []
    for run_id, fields in results.items():
        with log_context(run_id=run_id):
            ended = lifecycle.run_end(run_id=run_id, fields=fields)
            broker.result_taken(run_id)  # stored now, or the run had already ended
        if ended:
            decisions.append(
                Decision(audit.RECONCILE_FINISH, run_id, f"stored the result its worker could not: {fields['status']}")
            )
    return decisions


def _end_lost_runs(now: datetime) -> list[Decision]:
    decisions = []
    for run in lifecycle.runs_lost(now=now):
        with log_context(run_id=run.pk):
            ended = lifecycle.run_end_lost(run=run, now=now)
        if ended:
            decisions.append(
                Decision(audit.RECONCILE_LOST, run.pk, f"worker {run.worker or 'unknown'} stopped renewing its lease")
            )
    return decisions


def _resend_lost_messages(now: datetime) -> list[Decision]:
    """Messages only say "a slot is free" (scheduling.py): the queued runs that may start now need
    as many messages waiting. Those short are sent again for the oldest such runs in turn order,
    counting messages of runs that cannot start now (claimed, cancelled, or at their owner's quota)
    as spare: a worker taking one starts whoever's turn it is."""
    claimable = scheduling.claimable_runs()
    if not claimable:
        return []
    before = now - timedelta(seconds=RESEND_AFTER_SECONDS)
    stale = set(
        Run.objects.filter(pk__in=claimable)
        .filter(Q(sent_at__lt=before) | Q(sent_at__isnull=True, queued_at__lt=before))
        .values_list("pk", flat=True)
    )
    if not stale:
        return []
    try:
        waiting = broker.waiting_run_ids()
    except redis.RedisError as exc:
        logger.warning("reconciler: cannot read the queue (%s); %d queued run(s) wait for Redis", exc, len(stale))
        return []
    spare = len(waiting - set(claimable))
    # A message a worker holds but has not claimed with yet is sent again too: a spare one is harmless.
    short = [run_id for run_id in claimable if run_id not in waiting and run_id in stale]
    decisions = []
    for run_id in short[: max(0, len(short) - spare)]:
        with log_context(run_id=run_id):
            sent = lifecycle.run_send(run_id=run_id)
        if sent:
            decisions.append(Decision(audit.RECONCILE_RESEND, run_id, "queued, but no message of it was waiting"))
    return decisions


def _resend_lost_webhook_tries(now: datetime) -> list[Decision]:
    global _last_webhook_check
    if _last_webhook_check is not None and (now - _last_webhook_check).total_seconds() < WEBHOOK_CHECK_SECONDS:
        return []
    _last_webhook_check = now
    decisions = []
    for run_id, attempt in webhook_services.webhook_tries_overdue(now=now):
        with log_context(run_id=run_id):
            webhook_services.webhook_try_resend(run_id=run_id, attempt=attempt)
        decisions.append(Decision(audit.RECONCILE_WEBHOOK, run_id, f"webhook try {attempt} was due, its message lost"))
    return decisions
