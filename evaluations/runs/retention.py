"""Retention: the output and metric samples of runs that ended more than CRUCIBLE_RETENTION_DAYS ago,
and the uploaded archives of submissions whose runs all did, are deleted in bounded batches (the
reconciler calls `retention_pass`). Rows and their usage stay; each records when it expired. An
admin's pin on a submission keeps all of it. Each pass that deleted something is audited once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from evaluations.accounts import audit
from evaluations.accounts.quotas import OctetLength
from evaluations.models import TERMINAL_STATUSES, Run, Submission
from evaluations.runs import logstore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionResult:
    runs: int  # runs whose output this pass deleted
    archives: int  # submissions whose uploaded archive it deleted
    bytes_freed: int
    more: bool  # a batch was full: more may be waiting for the next pass

    @property
    def deleted_anything(self) -> bool:
        return bool(self.runs or self.archives)


NOTHING = RetentionResult(0, 0, 0, False)


def retention_cutoff(*, now: datetime) -> datetime | None:
    """Runs that ended before this have expired; None while retention is off (0 days)."""
    days = settings.CRUCIBLE_RETENTION_DAYS
    return now - timedelta(days=days) if days > 0 else None


def retention_pass(*, now: datetime | None = None, batch: int | None = None) -> RetentionResult:
    """Delete at most `batch` runs' output and `batch` archives. Each row is claimed with a
    conditional UPDATE before its files go, so two reconcilers never count one twice and a pin made
    meanwhile wins."""
    now = now or timezone.now()
    batch = batch or settings.CRUCIBLE_RETENTION_BATCH
    cutoff = retention_cutoff(now=now)
    if cutoff is None:
        return NOTHING
    run_ids, freed, runs_full = _expire_output(now=now, cutoff=cutoff, batch=batch)
    archives, archive_bytes, archives_full = _expire_archives(now=now, cutoff=cutoff, batch=batch)
    result = RetentionResult(len(run_ids), archives, freed + archive_bytes, runs_full or archives_full)
    if result.deleted_anything:
        logger.info(
            "retention: deleted the output of %d run(s) and %d archive(s), %d bytes",
            result.runs,
            archives,
            result.bytes_freed,
        )
        audit.audit_record(
            actor=None,
            action=audit.RETENTION_EXPIRE,
            target="runs",
            data={
                "runs": result.runs,
                "archives": archives,
                "bytes": result.bytes_freed,
                "first_run": min(run_ids, default=None),
                "last_run": max(run_ids, default=None),
                "ended_before": cutoff,
            },
        )
    return result


def _expired_runs(cutoff: datetime):
    return Run.objects.filter(
        output_expired_at__isnull=True,
        finished_at__lt=cutoff,
        status__in=TERMINAL_STATUSES,
        submission__pinned=False,
    )


def _expire_output(*, now: datetime, cutoff: datetime, batch: int) -> tuple[list[int], int, bool]:
    candidates = list(_expired_runs(cutoff).order_by("finished_at", "id").only("pk", "queued_at")[:batch])
    expired, freed = [], 0
    for run in candidates:
        if not _expired_runs(cutoff).filter(pk=run.pk).update(output_expired_at=now):
            continue  # another reconciler took it, or its submission was pinned meanwhile
        try:
            freed += logstore.run_logs_delete(run)
        except OSError as exc:  # marked expired anyway: its page must not promise output
            logger.warning("retention: run %s: cannot delete its output (%s)", run.pk, exc)
        expired.append(run.pk)
    return expired, freed, len(candidates) == batch


def _expired_archives(cutoff: datetime):
    recent_or_active = Run.objects.filter(submission=OuterRef("pk")).filter(
        Q(finished_at__isnull=True) | Q(finished_at__gte=cutoff)
    )
    return Submission.objects.filter(
        archive__isnull=False, archive_expired_at__isnull=True, pinned=False, created__lt=cutoff
    ).filter(~Exists(recent_or_active))


def _expire_archives(*, now: datetime, cutoff: datetime, batch: int) -> tuple[int, int, bool]:
    candidates = list(_expired_archives(cutoff).order_by("id").values_list("pk", OctetLength("archive"))[:batch])
    expired = freed = 0
    for pk, size in candidates:
        if _expired_archives(cutoff).filter(pk=pk).update(archive=None, archive_expired_at=now):
            expired += 1
            freed += size or 0
    return expired, freed, len(candidates) == batch


class RetentionSchedule:
    """Retention runs at start, then every `every` seconds; while a pass found a full batch, the
    next reconciler pass deletes the next batch, so a backlog drains without one long pass."""

    def __init__(self, *, every: float, clock=time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self.next_at = clock()

    def __call__(self) -> bool:
        return self.clock() >= self.next_at

    def done(self, *, more: bool) -> None:
        self.next_at = self.clock() + (0.0 if more else self.every)
