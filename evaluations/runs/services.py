"""Writes on runs: submitting, re-running, cancelling, sharing, and every status transition.

Transitions are conditional UPDATEs (`filter(status=...).update(...)`) whose row count decides the
outcome, so a repeated Celery delivery or a race between two workers changes nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

import sandbox
from evaluations.accounts import audit
from evaluations.accounts.quotas import owner_lock, quota_check_new_run, quotas_for, run_ceilings
from evaluations.live import groups, protocol, publisher
from evaluations.live.selectors import run_list_audience
from evaluations.models import Run, RunReason, RunStatus, Submission, WorkerHeartbeat
from evaluations.runs import selectors
from evaluations.runs.tasks import execute_run, reap_lost_runs
from evaluations.runs.uploads import UploadedSource, read_upload
from evaluations.runs.validation import (
    archive_size_validate,
    code_validate,
    entrypoint_clean,
    limits_build,
    project_files,
    run_inputs_validate,
    submission_name_clean,
)
from sandbox.contract import MiB

logger = logging.getLogger(__name__)

# How long past its wall limit a run may stay "running" before it is declared lost.
LOST_RUN_GRACE_SECONDS = 120
# How many waiting runs are told their new queue position when the queue moves.
QUEUE_UPDATES = 50


@dataclass(frozen=True)
class SubmissionInput:
    """What a user submits through the browser form or the API, not yet checked."""

    name: str | None = None
    code: str | None = None
    file: Any = None  # an uploaded .py file or project archive (a Django UploadedFile)
    entrypoint: str | None = None
    stdin: str = ""
    argv: list[str] | None = None
    wall_seconds: float | None = None
    memory_mb: int | None = None

    @classmethod
    def from_mapping(cls, data) -> SubmissionInput:
        """From a form's cleaned_data or a serializer's validated_data (absent or None: the default)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if data.get(f.name) is not None})


def submission_submit(*, owner, data: SubmissionInput, ip: str | None = None) -> Run:
    """The browser form's and the API's one entry point: read the upload, then submission_create."""
    source = read_upload(data.file, field="file") if data.file else UploadedSource(code=data.code or "")
    return submission_create(
        owner=owner,
        name=data.name,
        code=source.code,
        archive=source.archive,
        archive_name=source.archive_name,
        entrypoint=data.entrypoint,
        stdin=data.stdin,
        argv=data.argv,
        wall_seconds=data.wall_seconds,
        memory_mb=data.memory_mb,
        ip=ip,
    )


def submission_create(
    *,
    owner,
    name: str | None,
    code: str | None = None,
    archive: bytes | None = None,
    archive_name: str = "",
    entrypoint: str | None = None,
    stdin: str = "",
    argv: list[str] | None = None,
    wall_seconds: float | None = None,
    memory_mb: int | None = None,
    ip: str | None = None,
) -> Run:
    """Store the code (pasted, a file, or a project archive) and queue its first run; the task is
    sent only once the rows are committed. Everything is checked before anything is stored: the
    input (ValidationError), then the owner's quotas (QuotaExceeded), counted and inserted under
    the owner's lock so parallel submissions cannot pass a quota together.
    `ip`: the client's address, for the audit log."""
    clean_name = submission_name_clean(name)
    argv = [] if argv is None else argv
    run_inputs_validate(stdin=stdin, argv=argv)
    if (code is None) == (archive is None):
        raise ValidationError({"code": "give exactly one of pasted code, a .py file or a project archive"})
    quotas = quotas_for(owner)
    ceilings = run_ceilings(quotas)
    if archive is not None:
        archive_size_validate(archive, ceiling=ceilings.archive_bytes)
        entry = entrypoint_clean(entrypoint)
        files = project_files(archive=archive, archive_name=archive_name, entrypoint=entry)
        try:
            code = files[entry].decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError({"entrypoint": f"{entry!r} is not UTF-8 text"}) from None
        code_validate(code, field="entrypoint")
    else:
        entry = "main.py"
        assert code is not None
        code_validate(code, ceiling=ceilings.code_bytes)
    limits = limits_build(wall_seconds=wall_seconds, memory_mb=memory_mb, quotas=quotas)
    with transaction.atomic():
        owner_lock(owner)
        quota_check_new_run(user=owner, quotas=quotas, wall_seconds=limits.wall_seconds)
        submission = Submission.objects.create(
            owner=owner,
            name=clean_name,
            code=code,
            archive=archive,
            archive_name=archive_name if archive is not None else "",
            entrypoint=entry,
            stdin=stdin,
            argv=argv,
        )
        run = _run_create(submission=submission, limits=limits)
        audit.audit_record(
            actor=owner,
            action=audit.SUBMIT,
            target=f"run:{run.pk}",
            ip=ip,
            data={"submission": submission.pk, "name": clean_name, "project": archive is not None},
        )
    return run


def _run_create(*, submission: Submission, limits: sandbox.Limits) -> Run:
    run = Run.objects.create(
        submission=submission,
        wall_seconds=limits.wall_seconds,
        memory_bytes=limits.memory_bytes,
        stdout_limit_bytes=limits.stdout_bytes,
        stderr_limit_bytes=limits.stderr_bytes,
    )
    transaction.on_commit(lambda: execute_run.delay(run.pk))
    return run


def _transition(run_id: int, from_status: str, **fields) -> bool:
    """The one way a run changes status: a conditional UPDATE; on success the change is published
    to the run's websocket group once committed. False if the run was not in `from_status`."""
    changed = Run.objects.filter(pk=run_id, status=from_status).update(**fields) == 1
    if changed:
        _publish_status_on_commit(run_id)
    return changed


def run_claim(*, run_id: int) -> bool:
    """queued → running. False if the run is not queued (already claimed, finished or gone)."""
    claimed = _transition(run_id, RunStatus.QUEUED, status=RunStatus.RUNNING, started_at=timezone.now())
    if claimed:
        transaction.on_commit(_publish_queue_positions)
    return claimed


def run_requeue(*, run_id: int) -> bool:
    """running → queued, when its worker stops before the run could finish."""
    return _transition(run_id, RunStatus.RUNNING, status=RunStatus.QUEUED, started_at=None)


def run_finish(*, run_id: int, result: sandbox.ExecResult) -> bool:
    """running → the result's terminal status. Only a running run can finish."""
    return _transition(
        run_id,
        RunStatus.RUNNING,
        status=result.status.value,
        reason=result.reason.value if result.reason else None,
        detail=result.detail,
        exit_code=result.exit_code,
        finished_at=timezone.now(),
        cpu_seconds=result.usage.cpu_seconds,
        peak_memory_bytes=result.usage.peak_memory_bytes,
        peak_processes=result.usage.peak_processes,
        stdout_bytes=result.stdout.bytes_written,
        stderr_bytes=result.stderr.bytes_written,
        stdout_truncated=result.stdout.truncated,
        stderr_truncated=result.stderr.truncated,
        engine=result.engine,
        runtime_version=result.runtime_version[:200],
        image_digest=result.image_digest,
    )


def run_fail(*, run_id: int, reason: str, detail: str, from_status: str = RunStatus.RUNNING) -> bool:
    """Our fault (infrastructure): end the run as `error` with a reason the user can read."""
    return _transition(
        run_id, from_status, status=RunStatus.ERROR, reason=reason, detail=detail, finished_at=timezone.now()
    )


def run_lost_check_delay(*, run_id: int) -> float | None:
    """Seconds until a running run would count as lost; None if it is not running."""
    row = Run.objects.filter(pk=run_id, status=RunStatus.RUNNING).values_list("started_at", "wall_seconds").first()
    if row is None or row[0] is None:
        return None
    due = row[0] + timedelta(seconds=row[1] + LOST_RUN_GRACE_SECONDS + 1)
    return max(1.0, (due - timezone.now()).total_seconds())


def run_lost_check_schedule(*, run_id: int) -> None:
    """A redelivered run that is `running` may have lost its first worker: look again once it is
    past its wall limit (run_reap_lost then ends it as error/worker_lost if it is still running)."""
    delay = run_lost_check_delay(run_id=run_id)
    if delay is not None:
        reap_lost_runs.apply_async(countdown=delay)


def run_reap_lost(*, now=None) -> int:
    """End runs left `running` by a worker that died, once well past their wall-time limit."""
    now = now or timezone.now()
    reaped = 0
    candidates = Run.objects.filter(
        status=RunStatus.RUNNING, started_at__lt=now - timedelta(seconds=LOST_RUN_GRACE_SECONDS)
    ).values_list("pk", "started_at", "wall_seconds")
    for pk, started_at, wall in candidates:
        if started_at + timedelta(seconds=wall + LOST_RUN_GRACE_SECONDS) < now:
            count = Run.objects.filter(pk=pk, status=RunStatus.RUNNING, started_at=started_at).update(
                status=RunStatus.ERROR,
                reason=RunReason.WORKER_LOST,
                detail="the worker running this was lost; run it again",
                finished_at=now,
            )
            if count:
                _publish_status_on_commit(pk)
            reaped += count
    if reaped:
        logger.warning("marked %d lost run(s) as error/worker_lost", reaped)
    return reaped


class RunNotCancellable(Exception):
    """The run has already ended."""


def run_cancel(*, run: Run, actor=None, ip: str | None = None) -> Run:
    """Cancel a queued run at once; ask the worker to stop a running one (it ends within 1 s).
    `actor` (who asked; None for the system) and `ip` go to the audit log."""
    for _ in range(3):  # the run may move on between the two conditional updates: look again
        now = timezone.now()
        if _transition(
            run.pk,
            RunStatus.QUEUED,
            status=RunStatus.CANCELLED,
            reason=RunReason.CANCELLED,
            detail="cancelled before it started",
            cancel_requested_at=now,
            finished_at=now,
        ):
            was = RunStatus.QUEUED
            break
        if Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(cancel_requested_at=now):
            was = RunStatus.RUNNING
            break
        run.refresh_from_db()
        if run.is_terminal:
            raise RunNotCancellable(f"run {run.pk} has already ended ({run.status})")
    else:
        was = ""
    if was:
        audit.audit_record(actor=actor, action=audit.CANCEL, target=f"run:{run.pk}", ip=ip, data={"was": was})
    run.refresh_from_db()
    return run


def run_cancel_requested(*, run_id: int) -> bool:
    return Run.objects.filter(pk=run_id, cancel_requested_at__isnull=False).exists()


def run_rerun(
    *,
    run: Run,
    wall_seconds: float | None = None,
    memory_mb: int | None = None,
    actor=None,
    ip: str | None = None,
) -> Run:
    """A new run of the same submission, with the given run's limits unless others are given.
    It counts against the owner's quotas like a submission (checked the same way, under the lock),
    and gets the owner's current output cap. `actor` (default: the submission's owner) and `ip`
    go to the audit log."""
    owner = run.submission.owner
    quotas = quotas_for(owner)
    # The code is checked against the owner's upload quota as it is now, like the limits below.
    ceilings = run_ceilings(quotas)
    submission = run.submission
    if submission.archive is not None:
        archive_size_validate(submission.archive, ceiling=ceilings.archive_bytes)
    else:
        code_validate(submission.code, ceiling=ceilings.code_bytes)
    limits = limits_build(
        wall_seconds=run.wall_seconds if wall_seconds is None else wall_seconds,
        memory_mb=run.memory_bytes // MiB if memory_mb is None else memory_mb,
        quotas=quotas,
    )
    with transaction.atomic():
        owner_lock(owner)
        quota_check_new_run(user=owner, quotas=quotas, wall_seconds=limits.wall_seconds)
        new_run = _run_create(submission=run.submission, limits=limits)
        audit.audit_record(
            actor=actor if actor is not None else run.submission.owner,
            action=audit.RERUN,
            target=f"run:{new_run.pk}",
            ip=ip,
            data={"submission": run.submission_id, "from_run": run.pk},
        )
        return new_run


def _publish_queue_positions() -> None:
    """The queue moved: tell the first waiting runs' pages their new position, in one query and
    one send (run lists do not show positions, so owners' list sockets are not bothered)."""
    waiting = Run.objects.filter(status=RunStatus.QUEUED).order_by("queued_at", "id")[:QUEUE_UPDATES]
    publisher.send(
        [
            (groups.run_group(run.pk), protocol.status_event(selectors.run_status_payload(run=run, queue_position=i)))
            for i, run in enumerate(waiting)
        ]
    )


def _publish_status_on_commit(run_id: int) -> None:
    def publish() -> None:
        run = Run.objects.select_related("submission").filter(pk=run_id).first()
        if run is not None:
            publisher.publish_status(
                run_id=run_id,
                owner_id=run.submission.owner_id,
                payload=selectors.run_status_payload(run=run),
                list_groups=run_list_audience(run=run),
            )

    transaction.on_commit(publish)


@transaction.atomic
def submission_set_shared(*, actor, submission: Submission, shared: bool, request=None) -> bool:
    """The owner's choice: teammates may read this submission's runs (or no longer). True if it changed."""
    changed = (
        Submission.objects.filter(pk=submission.pk).exclude(shared_with_team=shared).update(shared_with_team=shared)
    )
    submission.shared_with_team = shared
    if changed and not shared:
        transaction.on_commit(publisher.access_changed)  # teammates following its runs must stop
    if changed:
        audit.audit_record(
            actor=actor,
            action=audit.SHARE_CHANGE,
            target=f"submission:{submission.pk}",
            request=request,
            data={"shared_with_team": shared},
        )
    return bool(changed)


def worker_heartbeat(*, hostname: str, started, concurrency: int, now=None) -> None:
    """A worker says it is alive (evaluations/runs/worker.py, every few seconds); the ops page reads it."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname[:200],
        defaults={"started": started, "last_seen": now or timezone.now(), "concurrency": concurrency},
    )
