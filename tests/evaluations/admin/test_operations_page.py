"""/ops/: queue depth from the broker, running runs, workers and their heartbeats, runs per status in
the last hour. Admins only: anyone else signed in gets 403 (the page is no secret, its contents are)."""

from __future__ import annotations

import re
import time
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.test import Client
from django.utils import timezone

from evaluations.accounts import services as account_services
from evaluations.models import Role, Run, WorkerHeartbeat
from evaluations.runs import lifecycle, worker


@pytest.fixture
def queue_of_its_own(settings):
    """The page reads the queue named by CELERY_TASK_DEFAULT_QUEUE on the broker: a unique name, so a
    worker of another test session on the same Redis never sees (or takes) what we put there."""
    import redis

    name = f"ops-test-{uuid.uuid4().hex[:12]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = name
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    yield name, client
    client.delete(name, *(f"{name}\x06\x16{step}" for step in (3, 6, 9)))
    client.close()


def text_of(response, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(dd|table)>', response.content.decode(), re.S)
    assert match, element_id
    return re.sub(r"<[^>]+>|\s+", " ", match.group(1)).strip()


@pytest.mark.parametrize("role", [Role.RESEARCHER, Role.REVIEWER])
def test_other_roles_are_refused_with_403(make_user, role) -> None:
    user = make_user()
    account_services.user_set_role(actor=None, user=user, role=role)
    client = Client()
    client.force_login(user)

    assert client.get("/ops/").status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(anonymous_client) -> None:
    assert anonymous_client.get("/ops/")["Location"] == "/login/?next=/ops/"


def test_it_counts_the_messages_waiting_in_the_runs_queue(admin_client, queue_of_its_own) -> None:
    name, redis_client = queue_of_its_own
    redis_client.rpush(name, "a", "b", "c")
    redis_client.rpush(f"{name}\x06\x166", "d")  # kombu's list for priority 6

    response = admin_client.get("/ops/")

    assert response.status_code == 200
    assert text_of(response, "queue-depth") == "4 messages waiting for a worker"


def test_a_broker_that_does_not_answer_is_said_so(admin_client, settings) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"

    response = admin_client.get("/ops/")

    assert response.status_code == 200
    assert "unknown: the broker (Redis) did not answer" in text_of(response, "queue-depth")


def test_it_lists_running_runs_with_owner_start_and_elapsed_time(admin_client, make_user, make_run) -> None:
    owner = make_user("runner")
    started = timezone.now() - timedelta(seconds=42)
    running = make_run(owner, name="long job", status="running", started_at=started)
    make_run(owner, name="waiting")
    make_run(owner, name="finished", status="succeeded", reason="exit_code")

    response = admin_client.get("/ops/")
    row = re.search(rf'<tr data-run-id="{running.pk}">(.*?)</tr>', response.content.decode(), re.S).group(1)

    assert "long job" in row and "runner" in row and started.strftime("%H:%M:%S") in row
    assert re.search(r"4[23]\.\d s", row)
    assert "waiting" not in text_of(response, "ops-running") and "finished" not in text_of(response, "ops-running")
    assert text_of(response, "running-count") == "1"
    assert text_of(response, "queued-runs") == "1"


def test_it_lists_workers_by_last_heartbeat_and_marks_silent_ones(admin_client) -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="celery@alive", started=now, last_seen=now, concurrency=4)
    WorkerHeartbeat.objects.create(
        hostname="celery@gone", started=now - timedelta(hours=1), last_seen=now - timedelta(minutes=5), concurrency=2
    )

    WorkerHeartbeat.objects.create(
        hostname="celery@last-week", started=now - timedelta(days=8), last_seen=now - timedelta(days=7)
    )

    page = admin_client.get("/ops/").content.decode()

    assert "celery@last-week" not in page
    alive = re.search(r'data-hostname="celery@alive" data-gone="false">(.*?)</tr>', page, re.S).group(1)
    gone = re.search(r'data-hostname="celery@gone" data-gone="true">(.*?)</tr>', page, re.S).group(1)
    assert "<td>4</td>" in alive and "gone" not in alive
    assert "gone (no heartbeat for over 30 s)" in gone
    assert page.index("celery@alive") < page.index("celery@gone")


def test_it_counts_runs_per_status_in_the_last_hour(admin_client, make_user, make_run) -> None:
    owner = make_user()
    for status in ("succeeded", "succeeded", "failed", "queued"):
        make_run(owner, status=status)
    old = make_run(owner, status="failed")
    Run.objects.filter(pk=old.pk).update(queued_at=timezone.now() - timedelta(hours=2))

    page = admin_client.get("/ops/").content.decode()

    counts = dict(re.findall(r'<td data-status="(\w+)">(\d+)</td>', page))
    assert counts == {"queued": "1", "running": "0", "succeeded": "2", "failed": "1", "cancelled": "0", "error": "0"}


def test_the_page_reloads_itself_and_is_not_cached(admin_client) -> None:
    response = admin_client.get("/ops/")

    assert '<meta http-equiv="refresh" content="5">' in response.content.decode()
    assert "no-cache" in response["Cache-Control"]


# -- the heartbeat -----------------------------------------------------------------------------------


def test_a_heartbeat_records_the_worker_and_moves_last_seen(db) -> None:
    started = timezone.now() - timedelta(minutes=1)
    lifecycle.worker_heartbeat(hostname="celery@h", started=started, concurrency=2)
    first = WorkerHeartbeat.objects.get(hostname="celery@h").last_seen

    lifecycle.worker_heartbeat(hostname="celery@h", started=started, concurrency=2, now=first + timedelta(seconds=10))

    beat = WorkerHeartbeat.objects.get(hostname="celery@h")
    assert beat.last_seen == first + timedelta(seconds=10) and beat.started == started and beat.concurrency == 2


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_writes_every_interval_until_stopped() -> None:
    stop = worker.heartbeat_start(hostname="celery@thread", concurrency=3, interval=0.05)
    try:
        deadline = time.monotonic() + 10
        seen: set = set()
        while len(seen) < 3 and time.monotonic() < deadline:
            seen |= set(WorkerHeartbeat.objects.filter(hostname="celery@thread").values_list("last_seen", flat=True))
            time.sleep(0.02)
    finally:
        stop.set()
    assert len(seen) >= 3  # it beat again and again
    assert WorkerHeartbeat.objects.get(hostname="celery@thread").concurrency == 3


def test_the_worker_ready_signal_starts_it_with_the_workers_name_and_concurrency(monkeypatch) -> None:
    started = []
    monkeypatch.setattr(worker, "heartbeat_start", lambda **kwargs: started.append(kwargs))
    consumer = SimpleNamespace(hostname="celery@box", controller=SimpleNamespace(concurrency=6))

    worker.start_heartbeat(sender=consumer)

    assert started == [{"hostname": "celery@box", "concurrency": 6}]
    from celery.signals import worker_ready

    assert any(receiver() is worker.start_heartbeat for _, receiver in worker_ready.receivers)


def test_a_worker_that_refused_to_start_shows_why(admin_client) -> None:
    lifecycle.worker_heartbeat(
        hostname="celery@broken", started=timezone.now(), concurrency=0, problem="refused to start: runsc not found"
    )

    assert "no: refused to start: runsc not found" in text_of(admin_client.get("/ops/"), "ops-workers")


def test_without_a_reconciler_the_page_says_to_start_one(admin_client) -> None:
    text = re.sub(r"<[^>]+>", "", admin_client.get("/ops/").content.decode())

    assert "No reconciler has run" in text and "manage.py reconcile" in text


def test_it_shows_the_reconcilers_last_pass_and_its_decisions(admin_client, make_user, make_run) -> None:
    from evaluations.runs import reconciler

    lifecycle.worker_heartbeat(
        hostname="reconciler@h", started=timezone.now(), concurrency=0, kind=WorkerHeartbeat.Kind.RECONCILER
    )
    ago = timezone.now() - timedelta(seconds=60)
    lost = make_run(make_user(), status="running", started_at=ago, worker="celery@gone pid 9", lease_expires_at=ago)
    reconciler.reconcile()

    page = admin_client.get("/ops/")
    body = page.content.decode()

    assert "reconciler@h" in body and "last pass" in body
    decisions = text_of(page, "ops-decisions")
    assert f"run:{lost.pk}" in decisions and "ended a run whose worker was lost" in decisions
    assert "celery@gone pid 9" in decisions
    assert "No worker has sent a heartbeat yet" in body  # the reconciler is not listed as a worker
