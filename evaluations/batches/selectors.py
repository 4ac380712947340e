"""Reads on batches: which batches a user may see (the runs' rule: a batch is its submission's),
counts by status and reason, run-time percentiles, and the results table (CSV and JSON)."""

from __future__ import annotations

import math
import shlex
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from evaluations.accounts.permissions import visible_runs_q
from evaluations.models import TERMINAL_STATUSES, Batch, Run, RunStatus

RESULT_COLUMNS = (
    "run_id",
    "input_index",
    "input_label",
    "input_argv",
    "input_stdin_file",
    "config_index",
    "config_label",
    "wall_seconds",
    "memory_mb",
    "status",
    "reason",
    "exit_code",
    "run_seconds",
    "peak_memory_bytes",
    "output_bytes",
)


def batch_list_visible(*, user) -> QuerySet[Batch]:
    # The runs' rule applies as is: a batch has the same `submission` path a run has.
    return Batch.objects.filter(visible_runs_q(user)).select_related("submission", "owner")


def batch_get_visible(*, user, batch_id: int) -> Batch:
    """The batch, or Http404 — also for another user's batch, so its existence does not leak."""
    try:
        return batch_list_visible(user=user).get(pk=batch_id)
    except Batch.DoesNotExist:
        raise Http404("No such batch") from None


def batch_runs(*, batch: Batch) -> QuerySet[Run]:
    """Its runs in the order they were made (input by input, each over every configuration)."""
    return (
        Run.objects.filter(batch=batch)
        .select_related("batch_input")
        .defer("batch_input__stdin", "detail")
        .order_by("id")
    )


def _percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile: a run time some run really had."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(round(fraction * len(ordered), 9)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class BatchStats:
    total: int
    counts: dict[str, int]  # by status, every status present (0 for none)
    reasons: dict[str, int]  # by reason, of ended runs that have one
    median_run_seconds: float | None
    p95_run_seconds: float | None

    @property
    def done(self) -> bool:
        return self.counts[RunStatus.QUEUED] == 0 and self.counts[RunStatus.RUNNING] == 0


def _stats(rows: list[tuple[str, str | None, datetime | None, datetime | None]]) -> BatchStats:
    """From (status, reason, started_at, finished_at) of each run."""
    counts = Counter(status for status, _, _, _ in rows)
    reasons = Counter(reason for _, reason, _, _ in rows if reason)
    times = [
        (finished - started).total_seconds()
        for status, _, started, finished in rows
        if status in TERMINAL_STATUSES and started is not None and finished is not None
    ]
    return BatchStats(
        total=len(rows),
        counts={status: counts.get(status, 0) for status in RunStatus.values},
        reasons=dict(sorted(reasons.items())),
        median_run_seconds=_percentile(times, 0.5),
        p95_run_seconds=_percentile(times, 0.95),
    )


def batch_stats(*, runs: list[Run]) -> BatchStats:
    return _stats([(run.status, run.reason, run.started_at, run.finished_at) for run in runs])


def batch_stats_many(*, batch_ids: list[int]) -> dict[int, BatchStats]:
    """batch_stats of several batches in one query of four columns (for lists)."""
    rows: dict[int, list] = {batch_id: [] for batch_id in batch_ids}
    columns = ("batch_id", "status", "reason", "started_at", "finished_at")
    for batch_id, *row in Run.objects.filter(batch_id__in=batch_ids).values_list(*columns):
        rows[batch_id].append(tuple(row))
    return {batch_id: _stats(batch_rows) for batch_id, batch_rows in rows.items()}


def result_row(*, run: Run, batch: Batch) -> dict[str, Any]:
    config = batch.configs[run.batch_config] if run.batch_config is not None else {}
    batch_input = run.batch_input
    return {
        "run_id": run.pk,
        "input_index": batch_input.index if batch_input else None,
        "input_label": batch_input.label if batch_input else "",
        "input_argv": shlex.join(batch_input.argv) if batch_input else "",
        "input_stdin_file": batch_input.stdin_file if batch_input else "",
        "config_index": run.batch_config,
        "config_label": config.get("label", ""),
        "wall_seconds": config.get("wall_seconds"),
        "memory_mb": config.get("memory_mb"),
        "status": run.status,
        "reason": run.reason,
        "exit_code": run.exit_code,
        "run_seconds": round(run.run_seconds, 3) if run.run_seconds is not None else None,
        "peak_memory_bytes": run.peak_memory_bytes,
        "output_bytes": run.stdout_bytes + run.stderr_bytes,
    }
