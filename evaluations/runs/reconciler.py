"""The reconciler: every few seconds, independent of workers, it makes the database and the broker
agree. It stores results workers handed over, ends runs whose worker is lost, and sends again the
messages of queued runs that have none waiting. Each decision is logged and audited (the ops page
shows them). Every step is a conditional UPDATE, so several reconcilers may run at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from django.db.models import Q
from django.utils import timezone

from evaluations.accounts import audit
from evaluations.models import Run, RunStatus
from evaluations.runs import broker, lifecycle, selectors

logger = logging.getLogger(__name__)

# A queued run's message may be on its way to the queue (or in a worker's hands) for this long.
RESEND_AFTER_SECONDS = 5.0


@dataclass(frozen=True)
class Decision:
    action: str  # one of audit.RECONCILE_ACTIONS
    run_id: int
    why: str


_NOT_YET = "(not told yet)"
_last_unavailable: str | None = _NOT_YET  # what this process last told queued runs they wait for


def reconcile(*, now: datetime | None = None) -> list[Decision]:
    """One pass; what it decided, in order."""
    now = now or timezone.now()
    decisions = [*_store_handed_over_results(), *_end_lost_runs(now), *_resend_lost_messages(now)]
    global _last_unavailable
    unavailable = selectors.workers_unavailable(now=now)
    if unavailable != _last_unavailable:  # workers came or went: queued runs' pages say so
        _last_unavailable = unavailable
        lifecycle.publish_queue_positions()
    for d in decisions:
        logger.warning("reconciler: run %s: %s (%s)", d.run_id, d.action, d.why)
        audit.audit_record(actor=None, action=d.action, target=f"run:{d.run_id}", data={"why": d.why})
    return decisions


def _store_handed_over_results() -> list[Decision]:
    try:
        results = broker.results_handed_over()
    except redis.RedisError as exc:
        logger.warning("reconciler: cannot read handed-over results (%s)", exc)
        return []
    decisions = []
    for run_id, fields in results.items():
        if lifecycle.run_end(run_id=run_id, fields=fields):
            decisions.append(
                Decision(audit.RECONCILE_FINISH, run_id, f"stored the result its worker could not: {fields['status']}")
            )
        broker.result_taken(run_id)  # stored now, or the run had already ended
    return decisions


def _end_lost_runs(now: datetime) -> list[Decision]:
    decisions = []
    for run in lifecycle.runs_lost(now=now):
        if lifecycle.run_end_lost(run=run, now=now):
            decisions.append(
                Decision(audit.RECONCILE_LOST, run.pk, f"worker {run.worker or 'unknown'} stopped renewing its lease")
            )
    return decisions


def _resend_lost_messages(now: datetime) -> list[Decision]:
    before = now - timedelta(seconds=RESEND_AFTER_SECONDS)
    stale = list(
        Run.objects.filter(status=RunStatus.QUEUED)
        .filter(Q(sent_at__lt=before) | Q(sent_at__isnull=True, queued_at__lt=before))
        .order_by("queued_at", "id")
        .values_list("pk", flat=True)
    )
    if not stale:
        return []
    try:
        waiting = broker.waiting_run_ids()
    except redis.RedisError as exc:
        logger.warning("reconciler: cannot read the queue (%s); %d queued run(s) wait for Redis", exc, len(stale))
        return []
    decisions = []
    for run_id in stale:
        # A message a worker holds but has not claimed yet is resent too: claiming is conditional.
        if run_id not in waiting and lifecycle.run_send(run_id=run_id):
            decisions.append(Decision(audit.RECONCILE_RESEND, run_id, "queued, but no message of it was waiting"))
    return decisions
