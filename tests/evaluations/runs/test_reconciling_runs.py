"""The reconciler against a real Redis broker and database: lost runs end truthfully, lost messages
are sent again (once), handed-over results are stored, and every decision is audited."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from evaluations.accounts import audit
from evaluations.models import AuditEvent, Run, RunReason, RunStatus, WorkerHeartbeat
from evaluations.runs import broker, execution, lifecycle, logstore, reconciler, selectors


@pytest.fixture
def queue():
    """The broker's runs queue, emptied before and after."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    keys = [*broker._queue_names(), broker.RESULTS_KEY]
    client.delete(*keys)
    yield client
    client.delete(*keys)
    client.close()


def queued_task_ids(client) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1)]


def long_ago(seconds: float = 60):
    return timezone.now() - timedelta(seconds=seconds)


def test_a_queued_run_with_no_message_waiting_is_sent_again_once(user, make_run, queue) -> None:
    run = make_run(user, sent_at=long_ago())

    first = reconciler.reconcile()
    second = reconciler.reconcile()

    assert [(d.action, d.run_id) for d in first] == [(audit.RECONCILE_RESEND, run.pk)]
    assert second == []  # its message is waiting now
    assert [broker.run_id_of(t) for t in queued_task_ids(queue)] == [run.pk]
    assert AuditEvent.objects.filter(action=audit.RECONCILE_RESEND, target=f"run:{run.pk}").count() == 1


def test_a_queued_run_whose_message_waits_is_left_alone(user, make_run, queue) -> None:
    run = make_run(user)
    assert lifecycle.run_send(run_id=run.pk)
    Run.objects.filter(pk=run.pk).update(sent_at=long_ago())

    assert reconciler.reconcile() == []
    assert len(queued_task_ids(queue)) == 1


def test_a_just_queued_run_is_not_sent_twice(user, make_run, queue) -> None:
    make_run(user)  # queued now, message not yet seen: it may be on its way

    assert reconciler.reconcile() == []
    assert queued_task_ids(queue) == []


def test_a_run_whose_lease_expired_ends_as_worker_lost_with_its_output_kept(user, make_run, queue) -> None:
    run = make_run(
        user,
        status=RunStatus.RUNNING,
        started_at=long_ago(20),
        worker="celery@a pid 1",
        lease_expires_at=long_ago(1),
        stdout=b"half of it\n",
    )
    live = make_run(
        user,
        status=RunStatus.RUNNING,
        started_at=long_ago(20),
        worker="celery@b pid 2",
        lease_expires_at=timezone.now() + timedelta(seconds=20),
    )

    decisions = reconciler.reconcile()

    run.refresh_from_db()
    live.refresh_from_db()
    assert [(d.action, d.run_id) for d in decisions] == [(audit.RECONCILE_LOST, run.pk)]
    assert (run.status, run.reason) == (RunStatus.ERROR, RunReason.WORKER_LOST)
    assert "celery@a pid 1" in run.detail and "kept" in run.detail
    assert run.stdout_bytes == len(b"half of it\n") and logstore.log_read(run, "stdout") == b"half of it\n"
    assert live.status == RunStatus.RUNNING


def test_a_renewed_lease_keeps_a_run_running(user, make_run, queue) -> None:
    run = make_run(user, status=RunStatus.RUNNING, started_at=long_ago(20), worker="w", lease_expires_at=long_ago(1))

    assert lifecycle.run_lease_renew(run_id=run.pk, worker="w")
    assert reconciler.reconcile() == []
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING


def test_right_after_a_database_outage_lapsed_leases_are_not_judged(user, make_run, queue) -> None:
    # The command passes judge_leases=False for one lease after a failed pass (the PostgreSQL outage
    # fault test shows the whole of it: the run ends succeeded).
    run = make_run(user, status=RunStatus.RUNNING, started_at=long_ago(20), worker="w", lease_expires_at=long_ago(1))

    assert reconciler.reconcile(judge_leases=False) == []
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
    assert [d.run_id for d in reconciler.reconcile()] == [run.pk]


def test_a_lease_renewal_by_another_worker_or_after_the_end_fails(user, make_run) -> None:
    run = make_run(user, status=RunStatus.RUNNING, started_at=long_ago(5), worker="w", lease_expires_at=long_ago(1))
    done = make_run(user, status=RunStatus.SUCCEEDED, worker="w")

    assert not lifecycle.run_lease_renew(run_id=run.pk, worker="someone else")
    assert not lifecycle.run_lease_renew(run_id=done.pk, worker="w")


def test_a_run_claimed_before_leases_existed_is_lost_only_well_past_its_wall_limit(user, make_run, queue) -> None:
    old = make_run(user, status=RunStatus.RUNNING, wall_seconds=1, started_at=long_ago(3600))
    recent = make_run(user, status=RunStatus.RUNNING, wall_seconds=60, started_at=long_ago(100))

    reconciler.reconcile()

    assert Run.objects.get(pk=old.pk).reason == RunReason.WORKER_LOST
    assert Run.objects.get(pk=recent.pk).status == RunStatus.RUNNING


@pytest.fixture
def owner_at_quota(make_user, make_run):
    """A user whose concurrent-run quota (1) is taken by a running run: (owner, that run)."""
    owner = make_user("held", quotas={"concurrent_runs": 1})
    ends = timezone.now() + timedelta(seconds=30)
    running = make_run(owner, status=RunStatus.RUNNING, started_at=long_ago(5), worker="w", lease_expires_at=ends)
    return owner, running


def end_committed(run: Run, capture) -> None:
    with capture(execute=True):
        fields = lifecycle.error_fields(reason=RunReason.SANDBOX_ERROR, detail="ended for the test")
        assert lifecycle.run_end(run_id=run.pk, fields=fields)


def test_when_a_run_ends_its_owners_waiting_run_gets_a_message_if_its_own_was_spent(
    owner_at_quota, make_run, queue, django_capture_on_commit_callbacks
) -> None:
    owner, running = owner_at_quota
    waiting = make_run(owner, sent_at=long_ago(3))
    assert not execution.run_in_sandbox(waiting.pk)  # delivered while its owner was at the quota: skipped

    end_committed(running, django_capture_on_commit_callbacks)

    assert [broker.run_id_of(t) for t in queued_task_ids(queue)] == [waiting.pk]


def test_when_a_run_ends_a_waiting_run_whose_message_waits_gets_no_second_one(
    owner_at_quota, make_run, queue, django_capture_on_commit_callbacks
) -> None:
    owner, running = owner_at_quota
    waiting = make_run(owner)
    assert lifecycle.run_send(run_id=waiting.pk)

    end_committed(running, django_capture_on_commit_callbacks)

    assert [broker.run_id_of(t) for t in queued_task_ids(queue)] == [waiting.pk]


def test_a_handed_over_result_is_stored_and_taken(user, make_run, queue) -> None:
    run = make_run(user, status=RunStatus.RUNNING, started_at=long_ago(5), worker="w", lease_expires_at=long_ago(1))
    fields = lifecycle.error_fields(reason=RunReason.SANDBOX_ERROR, detail="stored late")
    fields.update(status=RunStatus.SUCCEEDED, reason=None, detail="", exit_code=0)
    broker.result_hand_over(run.pk, fields)

    decisions = reconciler.reconcile()

    run.refresh_from_db()
    # Stored before the lease check, so the run keeps its true result rather than worker_lost.
    assert [d.action for d in decisions] == [audit.RECONCILE_FINISH]
    assert (run.status, run.exit_code) == (RunStatus.SUCCEEDED, 0)
    assert broker.results_handed_over() == {}


def test_a_handed_over_result_of_a_run_already_ended_changes_nothing(user, make_run, queue) -> None:
    run = make_run(user, status=RunStatus.CANCELLED, reason=RunReason.CANCELLED)
    broker.result_hand_over(run.pk, lifecycle.error_fields(reason=RunReason.SANDBOX_ERROR, detail="late"))

    assert reconciler.reconcile() == []
    assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED
    assert broker.results_handed_over() == {}


def test_without_a_live_worker_queued_runs_say_so(user, make_run) -> None:
    run = make_run(user)

    assert selectors.run_status_payload(run=run)["waiting"].startswith("no worker is available")

    lifecycle.worker_heartbeat(hostname="celery@up", started=timezone.now(), concurrency=2)
    assert selectors.run_status_payload(run=run)["waiting"] is None


def test_a_worker_that_refused_to_start_is_named_to_waiting_runs(user, make_run) -> None:
    run = make_run(user)
    lifecycle.worker_heartbeat(
        hostname="celery@h", started=timezone.now(), concurrency=0, problem="refused to start: runsc not found"
    )

    waiting = selectors.run_status_payload(run=run)["waiting"]

    assert "no worker is available" in waiting and "celery@h refused to start: runsc not found" in waiting


def test_stale_and_stopped_workers_do_not_count_as_available(user, make_run) -> None:
    run = make_run(user)
    lifecycle.worker_heartbeat(hostname="celery@old", started=long_ago(), concurrency=2, now=long_ago(120))
    lifecycle.worker_heartbeat(hostname="celery@stopped", started=long_ago(), concurrency=2)
    lifecycle.worker_stopped(hostname="celery@stopped")
    lifecycle.worker_heartbeat(
        hostname="reconciler@h", started=long_ago(), concurrency=0, kind=WorkerHeartbeat.Kind.RECONCILER
    )

    assert selectors.run_queue_state(run=run)[1] == "no worker is available; the run starts when one is"


def test_a_running_run_waits_for_nothing(user, make_run) -> None:
    run = make_run(user, status=RunStatus.RUNNING, started_at=timezone.now())

    assert selectors.run_status_payload(run=run)["waiting"] is None


def test_the_reconcile_command_passes_once_beats_and_forgets_expired_keys(user, make_run, queue) -> None:
    from django.core.management import call_command

    from evaluations.models import IdempotentRequest

    old = IdempotentRequest.objects.create(user=user, key="old", request_hash="x", status_code=201, response={})
    IdempotentRequest.objects.filter(pk=old.pk).update(created=long_ago(2 * 86400))
    fresh = IdempotentRequest.objects.create(user=user, key="new", request_hash="x", status_code=201, response={})
    lost = make_run(user, status=RunStatus.RUNNING, started_at=long_ago(20), worker="w", lease_expires_at=long_ago(1))

    call_command("reconcile", "--once")

    assert Run.objects.get(pk=lost.pk).reason == RunReason.WORKER_LOST
    assert list(IdempotentRequest.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert WorkerHeartbeat.objects.get(kind=WorkerHeartbeat.Kind.RECONCILER).hostname.startswith("reconciler@")


def test_a_skipped_delivery_whose_slot_freed_meanwhile_sends_the_run_a_message_again(
    owner_at_quota, make_run, queue, monkeypatch
) -> None:
    owner, running = owner_at_quota
    waiting = make_run(owner, sent_at=long_ago(3))
    real_claim = lifecycle.run_claim_next

    def claim_then_the_running_run_ends(**kwargs):
        claimed = real_claim(**kwargs)  # None: its owner is at the quota
        # ...and the running run ends before the skip is recorded; its freed slot found the waiting
        # run's message still out, so it sent none.
        Run.objects.filter(pk=running.pk).update(status=RunStatus.SUCCEEDED)
        return claimed

    monkeypatch.setattr(lifecycle, "run_claim_next", claim_then_the_running_run_ends)

    assert not execution.run_in_sandbox(waiting.pk)

    assert [broker.run_id_of(t) for t in queued_task_ids(queue)] == [waiting.pk]
