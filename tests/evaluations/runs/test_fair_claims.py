"""Fair claims against the real database and Redis broker: a free slot starts whoever's turn it is,
within each user's concurrent-run quota, and the reconciler keeps as many messages waiting as there
are runs that may start (docs/lifecycle.md)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from evaluations.models import QuotaOverride, Run, RunStatus
from evaluations.runs import broker, lifecycle, reconciler


@pytest.fixture
def queue():
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(*broker._queue_names())
    yield client
    client.delete(*broker._queue_names())
    client.close()


def queued(make_run, owner, n: int, **fields) -> list[Run]:
    return [make_run(owner, **fields) for _ in range(n)]


def test_a_free_slot_goes_to_the_user_with_fewest_runs_running(make_user, make_run) -> None:
    a, b = make_user("a"), make_user("b")
    make_run(a, status=RunStatus.RUNNING)
    a_waiting = queued(make_run, a, 3)
    b_waiting = queued(make_run, b, 1)

    assert lifecycle.run_claim_next(worker="w", prefer=a_waiting[0].pk) == b_waiting[0].pk


def test_with_one_slot_users_take_turns_not_first_in_first_out(make_user, make_run) -> None:
    a, b = make_user("a"), make_user("b")
    a_runs = queued(make_run, a, 3)
    b_runs = queued(make_run, b, 3)
    order = []
    for _ in range(6):
        run_id = lifecycle.run_claim_next(worker="w")
        order.append(run_id)
        Run.objects.filter(pk=run_id).update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())

    assert order == [a_runs[0].pk, b_runs[0].pk, a_runs[1].pk, b_runs[1].pk, a_runs[2].pk, b_runs[2].pk]


def test_a_user_at_their_concurrent_quota_waits_and_others_go_on(make_user, make_run) -> None:
    a, b = make_user("a"), make_user("b")
    QuotaOverride.objects.filter(user=a).update(concurrent_runs=1)
    make_run(a, status=RunStatus.RUNNING)
    queued(make_run, a, 2)
    b_run = make_run(b, status=RunStatus.RUNNING)

    assert lifecycle.run_claim_next(worker="w") is None  # a is at 1 of 1; b has nothing queued
    b_next = make_run(b)
    assert lifecycle.run_claim_next(worker="w") == b_next.pk
    assert b_run.pk != b_next.pk


def test_the_fifo_setting_claims_the_run_its_message_names(make_user, make_run, settings) -> None:
    settings.CRUCIBLE_SCHEDULER = "fifo"
    a, b = make_user("a"), make_user("b")
    make_run(a, status=RunStatus.RUNNING)
    a_next = make_run(a)
    make_run(b)

    assert lifecycle.run_claim_next(worker="w", prefer=a_next.pk) == a_next.pk


def test_a_run_that_ends_sends_a_message_for_its_owners_next_unsent_run(
    make_user, make_run, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    from evaluations.runs import tasks

    sent: list[int] = []
    monkeypatch.setattr(tasks.execute_run, "apply_async", lambda args, **kw: sent.append(args[0]))
    a = make_user("a")
    running = make_run(a, status=RunStatus.RUNNING)
    make_run(a, sent_at=timezone.now())  # has a message
    unsent = make_run(a)

    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.run_end(run_id=running.pk, fields=lifecycle.error_fields(reason="sandbox_error", detail="x"))

    assert sent == [unsent.pk]


def test_the_reconciler_does_not_send_for_runs_held_back_by_their_quota(make_user, make_run, queue) -> None:
    a = make_user("a")
    QuotaOverride.objects.filter(user=a).update(concurrent_runs=2)
    make_run(a, status=RunStatus.RUNNING)
    long_ago = timezone.now() - timedelta(minutes=1)
    waiting = queued(make_run, a, 5, sent_at=long_ago)

    decisions = reconciler.reconcile()

    assert [d.run_id for d in decisions] == [waiting[0].pk]  # one slot free: one message


def test_the_reconciler_counts_a_message_of_a_run_already_claimed_as_spare(make_user, make_run, queue) -> None:
    a = make_user("a")
    long_ago = timezone.now() - timedelta(minutes=1)
    claimed = make_run(a, status=RunStatus.RUNNING)
    assert lifecycle.run_send(run_id=claimed.pk)  # its message still waits: whoever takes it starts the next
    first, second = queued(make_run, a, 2, sent_at=long_ago)

    decisions = reconciler.reconcile()

    assert [d.run_id for d in decisions] == [first.pk]
    assert second.pk not in broker.waiting_run_ids()


def test_a_queue_position_counts_the_runs_expected_to_start_first(make_user, make_run) -> None:
    from evaluations.runs import scheduling, selectors

    a, b = make_user("a"), make_user("b")
    a_runs = queued(make_run, a, 200)
    b_run = make_run(b)
    b_second = make_run(b)

    assert selectors.run_queue_state(run=b_run)[0] == 1  # after a's oldest, whose turn comes first
    assert selectors.run_queue_state(run=b_second)[0] == 3
    assert selectors.run_queue_state(run=a_runs[2])[0] == 4
    first = [run.pk for run in scheduling.expected_order(limit=5)]
    assert first == [a_runs[0].pk, b_run.pk, a_runs[1].pk, b_second.pk, a_runs[2].pk]


def test_a_run_held_back_by_its_owners_quota_says_so(make_user, make_run) -> None:
    from evaluations.models import WorkerHeartbeat
    from evaluations.runs import selectors

    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="w", started=now, last_seen=now, concurrency=2)
    a = make_user("a")
    QuotaOverride.objects.filter(user=a).update(concurrent_runs=1)
    make_run(a, status=RunStatus.RUNNING)
    held = make_run(a)
    free = make_run(make_user("b"))

    assert selectors.run_queue_state(run=held)[1].startswith("your concurrent-run quota (1) is in use")
    assert selectors.run_queue_state(run=free)[1] is None


@pytest.fixture
def tellings(monkeypatch):
    """Times at which queue positions were told, with no telling of an earlier test still counting."""
    import time

    broker._kept_client().delete(broker.QUEUE_TOLD_KEY, broker.QUEUE_MOVED_KEY)
    times: list[float] = []
    monkeypatch.setattr(lifecycle, "publish_queue_positions", lambda: times.append(time.monotonic()))
    return times


def wait_for(predicate, seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.django_db(transaction=True)
def test_the_claiming_workers_watcher_tells_the_queue_once_the_sandbox_runs(make_user, make_run, tellings) -> None:
    from evaluations.runs import execution

    run = make_run(make_user("a"))
    assert lifecycle.run_claim_next(worker="w") == run.pk
    assert not tellings  # not on the way to the sandbox

    with execution._Watch(run.pk, "w"):
        assert not tellings  # not while the sandbox starts
        assert wait_for(lambda: tellings, 5)
    assert len(tellings) == 1


@pytest.mark.django_db(transaction=True)
def test_moves_within_a_second_are_told_together_once_a_second(make_user, make_run, tellings) -> None:
    from evaluations.runs import execution

    runs = [make_run(make_user(name)) for name in "abc"]
    with execution._Watch(runs[0].pk, "w"):
        assert wait_for(lambda: tellings, 5)
        # Two more runs start on other workers within the second: one telling covers both, once
        # the second since the first is over.
        with execution._Watch(runs[1].pk, "w2"), execution._Watch(runs[2].pk, "w3"):
            assert wait_for(lambda: len(tellings) == 2, 5)
            second = tellings[1]
            assert second - tellings[0] >= lifecycle.QUEUE_TELL_EVERY_SECONDS * 0.9
            wait_for(lambda: len(tellings) > 2, lifecycle.QUEUE_TELL_EVERY_SECONDS * 1.5)
    assert tellings[1:] == [second]


@pytest.mark.django_db(transaction=True)
def test_a_move_untold_when_its_run_ends_is_told_by_the_reconciler(make_user, make_run, tellings, queue) -> None:
    from evaluations.runs import execution

    first, second = make_run(make_user("a")), make_run(make_user("b"))
    reconciler.reconcile()  # (its first pass tells the queue whether workers are available)
    tellings.clear()
    with execution._Watch(first.pk, "w"):
        assert wait_for(lambda: tellings, 5)
    with execution._Watch(second.pk, "w"):
        pass  # a run that ended before the watcher's first look, within the second of the first
    assert len(tellings) == 1

    reconciler.reconcile()
    assert len(tellings) == 2
    reconciler.reconcile()  # told: nothing left to tell
    assert len(tellings) == 2


@pytest.mark.django_db(transaction=True)
def test_a_telling_on_a_host_whose_clock_runs_ahead_does_not_cover_later_moves(
    make_user, make_run, tellings, monkeypatch
) -> None:
    import time
    from types import SimpleNamespace

    from evaluations.runs import execution

    run = make_run(make_user("a"))
    ahead = SimpleNamespace(time=lambda: time.time() + 30)  # another host's clock
    with monkeypatch.context() as there:
        there.setattr(broker, "time", ahead, raising=False)
        assert lifecycle.queue_moved_tell(moved_at=ahead.time())
    assert len(tellings) == 1
    with execution._Watch(run.pk, "w"):  # a run claimed here moves the queue after that telling
        assert wait_for(lambda: len(tellings) == 2, lifecycle.QUEUE_TELL_EVERY_SECONDS + 2)
