"""The Celery side: a second delivery changes nothing, and a worker refuses to run unsandboxed."""

from __future__ import annotations

import pytest
from django.forms.models import model_to_dict
from django.utils import timezone

from evaluations.models import Run, RunStatus, WorkerHeartbeat
from evaluations.runs import tasks, worker


@pytest.mark.parametrize("status", [RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.CANCELLED])
def test_a_delivery_of_a_run_that_is_not_queued_changes_nothing(user, make_run, status) -> None:
    run = make_run(user, status=status, started_at=timezone.now(), worker="celery@first pid 1")
    before = model_to_dict(Run.objects.get(pk=run.pk))

    tasks.execute_run(run.pk)

    assert model_to_dict(Run.objects.get(pk=run.pk)) == before


class Exited(Exception):
    pass


def test_a_worker_without_a_usable_sandbox_refuses_to_start_and_says_why(db, settings, monkeypatch, capsys) -> None:
    settings.CRUCIBLE_RUNSC_PATH = "/nonexistent/runsc"

    def fake_exit(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(worker.os, "_exit", fake_exit)

    class Controller:
        hostname = "celery@refuser"

    with pytest.raises(Exited) as caught:
        worker.refuse_without_sandbox(sender=Controller())

    assert caught.value.args == (78,)
    assert "refusing to start" in capsys.readouterr().err
    beat = WorkerHeartbeat.objects.get(hostname="celery@refuser")
    assert beat.problem.startswith("refused to start:") and "runsc" in beat.problem
