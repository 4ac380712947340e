"""The run metrics /metrics computes from the database at each scrape: finished runs by status and
reason, the queue, runs in flight per worker, heartbeat ages, run duration, queue wait and sandbox
start latency."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from evaluations.models import Run, RunReason, RunStatus, WorkerHeartbeat
from evaluations.monitoring.scrape import metrics_exposition
from evaluations.runs import lifecycle
from sandbox.contract import Timings
from tests.evaluations.monitoring.scraping import samples, total

pytestmark = pytest.mark.django_db


def _scrape() -> dict:
    return samples(metrics_exposition().decode())


def test_finished_runs_are_counted_by_status_and_reason(make_run, user) -> None:
    now = timezone.now()
    for _ in range(3):
        make_run(user, status=RunStatus.SUCCEEDED, started_at=now, finished_at=now)
    make_run(user, status=RunStatus.FAILED, reason=RunReason.TIMEOUT, started_at=now, finished_at=now)
    make_run(user, status=RunStatus.ERROR, reason=RunReason.WORKER_LOST, started_at=now, finished_at=now)
    make_run(user, status=RunStatus.RUNNING, started_at=now)
    make_run(user)  # queued

    found = _scrape()

    assert total(found, "crucible_runs_finished_total", status="succeeded", reason="none") == 3
    assert total(found, "crucible_runs_finished_total", status="failed", reason="timeout") == 1
    assert total(found, "crucible_runs_finished_total", status="error", reason="worker_lost") == 1
    assert total(found, "crucible_runs_finished_total") == 5


def test_the_queue_shows_how_many_wait_and_the_oldest_ones_age(make_run, user) -> None:
    old = make_run(user)
    old.queued_at = timezone.now() - timedelta(seconds=90)
    old.save(update_fields=["queued_at"])
    make_run(user)

    found = _scrape()

    assert total(found, "crucible_runs_queued") == 2
    assert 90 <= total(found, "crucible_oldest_queued_run_age_seconds") < 120


def test_an_empty_queue_has_no_age(make_run, user) -> None:
    assert total(_scrape(), "crucible_oldest_queued_run_age_seconds") == 0


def test_runs_in_flight_are_counted_per_worker_node(make_run, user) -> None:
    now = timezone.now()
    for beat in ("node-a@host", "node-b@host"):
        WorkerHeartbeat.objects.create(hostname=beat, started=now, last_seen=now - timedelta(seconds=4))
    make_run(user, status=RunStatus.RUNNING, started_at=now, worker="node-a@host pid 11")
    make_run(user, status=RunStatus.RUNNING, started_at=now, worker="node-a@host pid 12")

    found = _scrape()

    assert total(found, "crucible_runs_in_flight", worker="node-a@host") == 2
    assert ("crucible_runs_in_flight", frozenset({("worker", "node-b@host")})) in found  # idle, shown as 0
    assert total(found, "crucible_runs_in_flight", worker="node-b@host") == 0
    assert 4 <= total(found, "crucible_worker_heartbeat_age_seconds", worker="node-b@host", kind="worker") < 30


def test_run_duration_and_queue_wait_fall_into_their_buckets(make_run, user) -> None:
    start = timezone.now() - timedelta(minutes=5)
    for wait, took in [(0.05, 0.4), (3.0, 7.0), (40.0, 200.0)]:
        run = make_run(
            user,
            status=RunStatus.SUCCEEDED,
            started_at=start + timedelta(seconds=wait),
            finished_at=start + timedelta(seconds=wait + took),
        )
        run.queued_at = start
        run.save(update_fields=["queued_at"])
    make_run(user, status=RunStatus.CANCELLED, reason=RunReason.CANCELLED, finished_at=start)  # never started

    found = _scrape()

    duration = "crucible_run_duration_seconds"
    assert total(found, f"{duration}_count") == 3
    assert total(found, f"{duration}_bucket", le="0.5") == 1
    assert total(found, f"{duration}_bucket", le="10.0") == 2
    assert total(found, f"{duration}_bucket", le="+Inf") == 3
    assert total(found, f"{duration}_sum") == pytest.approx(207.4, abs=0.01)
    wait = "crucible_run_queue_wait_seconds"
    assert total(found, f"{wait}_count") == 3
    assert total(found, f"{wait}_bucket", le="0.1") == 1
    assert total(found, f"{wait}_bucket", le="5.0") == 2
    assert total(found, f"{wait}_sum") == pytest.approx(43.05, abs=0.01)


def test_the_sandbox_start_is_measured_from_the_claim_to_the_boot() -> None:
    # Claimed at 100.0; execute() returned at 103.0 after 0.5 s of teardown and a 2.0 s run whose
    # sandbox booted 0.2 s into it: up at 100.7.
    booted = SimpleNamespace(timings=Timings(boot_seconds=0.2, run_seconds=2.0, teardown_seconds=0.5))
    never = SimpleNamespace(timings=Timings(boot_seconds=None))

    assert lifecycle.sandbox_start_seconds(claimed=100.0, returned=103.0, result=booted) == pytest.approx(0.7)
    assert lifecycle.sandbox_start_seconds(claimed=100.0, returned=103.0, result=never) is None


def test_sandbox_starts_are_stored_with_the_runs_end_and_fall_into_their_buckets(make_run, user) -> None:
    now = timezone.now()
    for seconds in (0.04, 0.25, 0.25, 3.0, None):  # None: it never booted, not a start
        run = make_run(user, status=RunStatus.RUNNING, started_at=now)
        ended = lifecycle.error_fields(reason=RunReason.SANDBOX_ERROR, detail="it failed after booting")
        fields = {**ended, "sandbox_start_seconds": seconds}
        assert lifecycle.run_end(run_id=run.pk, fields=fields)
    assert Run.objects.filter(sandbox_start_seconds=0.25, status=RunStatus.ERROR).count() == 2

    found = _scrape()

    start = "crucible_sandbox_start_seconds"
    assert total(found, f"{start}_count") == 4
    assert total(found, f"{start}_bucket", le="0.05") == 1
    assert total(found, f"{start}_bucket", le="0.3") == 3
    assert total(found, f"{start}_bucket", le="+Inf") == 4
    assert total(found, f"{start}_sum") == pytest.approx(3.54)
