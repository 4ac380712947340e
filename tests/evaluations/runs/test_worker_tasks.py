"""The Celery side: redeliveries, the worker's start-up recovery, and its refusal to run unsandboxed.

Task bodies are called in-process; sending to the broker is replaced by a recorder (the unit's edge).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from evaluations.models import RunReason, RunStatus
from evaluations.runs import services, tasks, worker


@pytest.fixture
def scheduled(monkeypatch) -> list[dict]:
    calls: list[dict] = []
    monkeypatch.setattr(tasks.reap_lost_runs, "apply_async", lambda **kwargs: calls.append(kwargs))
    return calls


@pytest.fixture
def resent(monkeypatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(tasks.execute_run, "delay", lambda run_id: calls.append(run_id))
    return calls


def test_a_redelivered_running_run_gets_a_lost_check_when_it_would_be_due(user, make_run, scheduled) -> None:
    run = make_run(user, status=RunStatus.RUNNING, wall_seconds=10, started_at=timezone.now())

    tasks.execute_run(run.pk)

    assert len(scheduled) == 1
    assert scheduled[0]["countdown"] == pytest.approx(10 + services.LOST_RUN_GRACE_SECONDS + 1, abs=2)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_a_redelivered_finished_run_schedules_nothing(user, make_run, scheduled) -> None:
    run = make_run(user, status=RunStatus.SUCCEEDED)

    tasks.execute_run(run.pk)

    assert scheduled == []


def test_the_reaper_task_ends_lost_runs(user, make_run) -> None:
    lost = make_run(user, status=RunStatus.RUNNING, wall_seconds=1, started_at=timezone.now() - timedelta(hours=2))

    tasks.reap_lost_runs()

    lost.refresh_from_db()
    assert (lost.status, lost.reason) == (RunStatus.ERROR, RunReason.WORKER_LOST)


def test_a_starting_worker_resends_queued_runs_and_reaps_lost_ones(user, make_run, resent) -> None:
    queued = make_run(user)
    lost = make_run(user, status=RunStatus.RUNNING, wall_seconds=1, started_at=timezone.now() - timedelta(hours=2))
    live = make_run(user, status=RunStatus.RUNNING, wall_seconds=60, started_at=timezone.now())
    make_run(user, status=RunStatus.SUCCEEDED)

    worker.recover_runs()

    assert resent == [queued.pk]
    lost.refresh_from_db()
    live.refresh_from_db()
    assert lost.status == RunStatus.ERROR and live.status == RunStatus.RUNNING


class Exited(Exception):
    pass


def test_a_worker_without_a_usable_sandbox_refuses_to_start(settings, monkeypatch, capsys) -> None:
    settings.CRUCIBLE_RUNSC_PATH = "/nonexistent/runsc"

    def fake_exit(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(worker.os, "_exit", fake_exit)

    with pytest.raises(Exited) as caught:
        worker.refuse_without_sandbox()

    assert caught.value.args == (78,)
    assert "refusing to start" in capsys.readouterr().err
