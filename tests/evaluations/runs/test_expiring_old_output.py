"""Retention: the output, samples and uploads of runs that ended more than CRUCIBLE_RETENTION_DAYS ago
are deleted in bounded batches, the rows and their usage stay, pinned submissions are kept, the run
page and the API say the output expired, and each pass is audited once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from evaluations.accounts import audit
from evaluations.models import AuditEvent, MetricBatch, OutputChunk, Run, RunStatus, Submission
from evaluations.runs import logstore, retention, services


@pytest.fixture(autouse=True)
def thirty_days(settings):
    settings.CRUCIBLE_RETENTION_DAYS = 30


def days_ago(days: float):
    return timezone.now() - timedelta(days=days)


@pytest.fixture
def ended(make_run, user):
    """ended(days_ago, **fields): a succeeded run of `user` that ended that long ago, with output."""

    def _ended(days: float, **fields) -> Run:
        fields.setdefault("stdout", b"kept?\n")
        return make_run(
            user,
            status=RunStatus.SUCCEEDED,
            finished_at=days_ago(days),
            started_at=days_ago(days),
            stdout_bytes=len(fields["stdout"]),
            cpu_seconds=1.5,
            peak_memory_bytes=123456,
            **fields,
        )

    return _ended


def test_a_run_older_than_the_retention_loses_its_output_but_keeps_its_row_and_usage(ended) -> None:
    old = ended(31)
    logstore.RunLogWriter(old).append_metrics({"t": 0.5, "cpu_seconds": 0.1})
    recent = ended(29)
    assert logstore.log_read(old, "stdout") == b"kept?\n" and logstore.metrics_read(old)

    result = retention.retention_pass()

    assert (result.runs, result.more) == (1, False)
    assert result.bytes_freed == len(b"kept?\n")
    old.refresh_from_db()
    assert old.output_expired_at is not None
    assert (old.status, old.cpu_seconds, old.peak_memory_bytes, old.stdout_bytes) == ("succeeded", 1.5, 123456, 6)
    assert logstore.log_read(old, "stdout") == b""
    assert not OutputChunk.objects.filter(run=old).exists() and not MetricBatch.objects.filter(run=old).exists()
    recent.refresh_from_db()
    assert recent.output_expired_at is None
    assert logstore.log_read(recent, "stdout") == b"kept?\n"


def test_runs_still_running_and_retention_off_keep_their_output(ended, make_run, user, settings) -> None:
    running = make_run(user, status=RunStatus.RUNNING, started_at=days_ago(40), stdout=b"x")
    ended(40)
    settings.CRUCIBLE_RETENTION_DAYS = 0

    assert retention.retention_pass().runs == 0

    settings.CRUCIBLE_RETENTION_DAYS = 30
    assert retention.retention_pass().runs == 1
    running.refresh_from_db()
    assert running.output_expired_at is None and logstore.log_read(running, "stdout") == b"x"


def test_a_pinned_submission_keeps_its_output_and_its_upload(ended, user) -> None:
    run = ended(60)
    Submission.objects.filter(pk=run.submission_id).update(archive=b"PK" * 600, archive_name="p.zip")
    services.submission_set_pinned(actor=None, submission=run.submission, pinned=True)

    result = retention.retention_pass()

    assert (result.runs, result.archives) == (0, 0)
    assert logstore.log_read(run, "stdout") == b"kept?\n"
    assert Submission.objects.get(pk=run.submission_id).archive is not None
    assert AuditEvent.objects.filter(action=audit.PIN_CHANGE, target=f"submission:{run.submission_id}").exists()


def test_an_upload_expires_once_all_its_runs_are_old_and_then_cannot_be_rerun(ended, make_run, user) -> None:
    run = ended(60)
    Submission.objects.filter(pk=run.submission_id).update(
        archive=b"A" * 2000, archive_name="p.zip", created=days_ago(61)
    )
    recent = Run.objects.create(
        submission=run.submission,
        status=RunStatus.SUCCEEDED,
        finished_at=days_ago(1),
        wall_seconds=run.wall_seconds,
        memory_bytes=run.memory_bytes,
        stdout_limit_bytes=run.stdout_limit_bytes,
        stderr_limit_bytes=run.stderr_limit_bytes,
    )

    assert retention.retention_pass().archives == 0  # re-run yesterday: the project is still in use
    Run.objects.filter(pk=recent.pk).update(finished_at=days_ago(45))
    result = retention.retention_pass()

    assert result.archives == 1 and result.bytes_freed >= 2000
    submission = Submission.objects.get(pk=run.submission_id)
    assert submission.archive is None and submission.archive_expired_at is not None
    assert submission.code == run.submission.code  # the entry point's text stays
    with pytest.raises(services.ValidationError, match="submit the project again"):
        services.run_rerun(run=Run.objects.get(pk=run.pk))


def test_a_pass_deletes_at_most_a_batch_and_says_more_remain(ended) -> None:
    runs = [ended(40 + i) for i in range(5)]

    first = retention.retention_pass(batch=2)
    second = retention.retention_pass(batch=2)
    third = retention.retention_pass(batch=2)
    fourth = retention.retention_pass(batch=2)

    assert [(r.runs, r.more) for r in (first, second, third, fourth)] == [(2, True), (2, True), (1, False), (0, False)]
    assert Run.objects.filter(pk__in=[r.pk for r in runs], output_expired_at__isnull=True).count() == 0
    # The oldest go first.
    events = list(AuditEvent.objects.filter(action=audit.RETENTION_EXPIRE).order_by("id"))
    assert [e.data["runs"] for e in events] == [2, 2, 1]  # one summary per pass that deleted something
    assert {events[0].data["first_run"], events[0].data["last_run"]} == {runs[4].pk, runs[3].pk}
    assert events[0].actor is None and events[0].target == "runs"


def test_the_schedule_runs_at_once_then_hourly_and_drains_a_backlog_batch_by_batch() -> None:
    now = [1000.0]
    schedule = retention.RetentionSchedule(every=3600, clock=lambda: now[0])

    assert schedule()
    schedule.done(more=True)
    assert schedule()  # a full batch: the next reconciler pass takes the next one
    schedule.done(more=False)
    now[0] += 3599
    assert not schedule()
    now[0] += 2
    assert schedule()


def test_manage_py_reconcile_runs_a_retention_pass(ended, settings) -> None:
    run = ended(90)

    call_command("reconcile", "--once")

    run.refresh_from_db()
    assert run.output_expired_at is not None


def test_the_run_page_and_the_api_say_the_output_expired(ended, client, api_client) -> None:
    run = ended(31)
    retention.retention_pass()

    page = client.get(f"/runs/{run.pk}/").content.decode()
    detail = api_client.get(f"/api/v1/runs/{run.pk}/")
    logs = api_client.get(f"/api/v1/runs/{run.pk}/logs/?stream=stdout")
    metrics = api_client.get(f"/api/v1/runs/{run.pk}/metrics/")

    assert 'id="output-expired"' in page and "expired and were deleted" in page
    assert '<div class="log-frame" hidden>' in page
    assert detail.status_code == 200 and detail.json()["output_expired_at"] is not None
    assert detail.json()["usage"]["cpu_seconds"] == 1.5
    assert logs.status_code == 410 and "expired" in logs.json()["detail"] and "30 days" in logs.json()["detail"]
    assert metrics.status_code == 410


def test_a_kept_run_says_nothing_about_expiry(ended, client, api_client) -> None:
    run = ended(1)

    page = client.get(f"/runs/{run.pk}/").content.decode()

    assert 'id="output-expired"' not in page
    assert api_client.get(f"/api/v1/runs/{run.pk}/").json()["output_expired_at"] is None
    assert api_client.get(f"/api/v1/runs/{run.pk}/logs/?stream=stdout").content == b"kept?\n"
