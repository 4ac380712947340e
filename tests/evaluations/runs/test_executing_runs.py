"""run_in_sandbox with the real runsc engine: claiming, finishing, repeats, and every failure ending the run."""

from __future__ import annotations

import pytest
from django.forms.models import model_to_dict
from django.utils import timezone

import sandbox
from evaluations.models import Run, RunReason, RunStatus
from evaluations.runs import execution, lifecycle, logstore


def snapshot(run: Run) -> dict:
    """Every stored field of the run, re-read from the database."""
    fresh = Run.objects.get(pk=run.pk)
    values = model_to_dict(fresh)
    values.update(
        stdout=logstore.log_read(run, "stdout"),
        stderr=logstore.log_read(run, "stderr"),
        started_at=fresh.started_at,
        finished_at=fresh.finished_at,
    )
    return values


def a_result(**fields) -> sandbox.ExecResult:
    values = dict(
        status=sandbox.Status.SUCCEEDED,
        reason=None,
        exit_code=0,
        signal=None,
        stdout=sandbox.StreamResult(data=b"forged\n", bytes_written=7, truncated=False),
        stderr=sandbox.StreamResult(data=b"", bytes_written=0, truncated=False),
        usage=sandbox.contract.Usage(),
        timings=sandbox.contract.Timings(),
        engine="runsc",
        runtime_version="test",
        image_digest="sha256:test",
    )
    values.update(fields)
    return sandbox.ExecResult(**values)


# The run's output is stored by a thread of its own, on its own connection, as on a worker: the
# run row must be committed for it to see it.
@pytest.mark.django_db(transaction=True)
def test_a_queued_run_runs_in_the_sandbox_and_succeeds(user, make_run) -> None:
    run = make_run(user, code="print('hello')\n")

    assert execution.run_in_sandbox(run.pk) is True

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert logstore.log_read(run, "stdout") == b"hello\n"
    assert run.exit_code == 0
    assert run.engine == "runsc"
    assert run.image_digest and run.runtime_version
    assert run.started_at is not None and run.finished_at >= run.started_at
    assert 0 < run.sandbox_start_seconds < run.run_seconds  # stored with its end, for /metrics


@pytest.mark.django_db(transaction=True)
def test_a_second_delivery_returns_false_and_changes_nothing(user, make_run) -> None:
    run = make_run(user, code="print('hello')\n")
    assert execution.run_in_sandbox(run.pk) is True
    before = snapshot(run)

    assert execution.run_in_sandbox(run.pk) is False

    assert snapshot(run) == before
    assert before["status"] == RunStatus.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_a_program_that_exits_non_zero_fails_with_its_exit_code(user, make_run) -> None:
    run = make_run(user, code="import sys\nprint('oops', file=sys.stderr)\nsys.exit(3)\n")

    execution.run_in_sandbox(run.pk)

    run.refresh_from_db()
    assert (run.status, run.reason, run.exit_code) == (RunStatus.FAILED, RunReason.EXIT_CODE, 3)
    assert logstore.log_read(run, "stderr") == b"oops\n"


def test_a_run_already_running_is_not_claimed_again(user, make_run) -> None:
    run = make_run(user, status=RunStatus.RUNNING, started_at=timezone.now())
    before = snapshot(run)

    assert execution.run_in_sandbox(run.pk) is False

    assert snapshot(run) == before


def test_a_run_that_does_not_exist_is_skipped(db) -> None:
    assert execution.run_in_sandbox(987654) is False


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.SUCCEEDED, RunStatus.ERROR])
def test_only_a_running_run_can_finish(user, make_run, status) -> None:
    run = make_run(user, status=status)
    before = snapshot(run)

    assert lifecycle.run_finish(run_id=run.pk, result=a_result()) is False

    assert snapshot(run) == before


def test_a_running_run_finishes_once(user, make_run) -> None:
    run = make_run(user, status=RunStatus.RUNNING, started_at=timezone.now())

    assert lifecycle.run_finish(run_id=run.pk, result=a_result()) is True
    assert lifecycle.run_finish(run_id=run.pk, result=a_result(stdout=sandbox.StreamResult(b"2nd", 3, False))) is False

    run.refresh_from_db()
    # The log store is written by the worker as output arrives, not by run_finish.
    assert run.status == RunStatus.SUCCEEDED and run.stdout_bytes == 7


def test_an_unavailable_engine_ends_the_run_as_a_sandbox_error(user, make_run, settings) -> None:
    settings.CRUCIBLE_RUNSC_PATH = "/nonexistent/runsc"
    run = make_run(user)

    assert execution.run_in_sandbox(run.pk) is True

    run.refresh_from_db()
    assert run.status == RunStatus.ERROR
    assert run.reason == RunReason.SANDBOX_ERROR
    assert "runsc" in run.detail and "install" in run.detail
    assert run.finished_at is not None


def test_an_unknown_engine_name_ends_the_run_as_a_sandbox_error(user, make_run, settings) -> None:
    settings.CRUCIBLE_SANDBOX_ENGINE = "docker"
    run = make_run(user)

    execution.run_in_sandbox(run.pk)

    run.refresh_from_db()
    assert (run.status, run.reason) == (RunStatus.ERROR, RunReason.SANDBOX_ERROR)
    assert "docker" in run.detail


def test_an_unexpected_sandbox_failure_ends_the_run_and_is_logged(user, make_run, settings, tmp_path, caplog) -> None:
    settings.CRUCIBLE_IMAGES_DIR = tmp_path / "no-images-here"
    run = make_run(user)

    assert execution.run_in_sandbox(run.pk) is True
    assert "sandbox failed" in caplog.text

    run.refresh_from_db()
    assert (run.status, run.reason) == (RunStatus.ERROR, RunReason.SANDBOX_ERROR)
    assert run.finished_at is not None
