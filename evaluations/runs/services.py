"""Writes on runs that users ask for: submitting, re-running, cancelling, sharing.

How a run then moves on (claimed, leased, finished, lost) is in lifecycle.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

import sandbox
from evaluations.accounts import audit
from evaluations.accounts.quotas import owner_lock, quota_check_new_run, quotas_for, run_ceilings, upload_size
from evaluations.live import publisher
from evaluations.models import Run, RunReason, RunStatus, Submission
from evaluations.monitoring.logging import log_bind
from evaluations.runs import lifecycle
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
from evaluations.webhooks.services import callback_ready, callback_url_clean
from sandbox.contract import MiB

logger = logging.getLogger(__name__)


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
    preload: bool = False  # the program may start with common modules imported (docs/sandbox.md)
    wait: bool = False  # over the concurrent-run quota: wait in the owner's queue rather than be refused
    callback_url: str = ""  # told when each of its runs ends (evaluations/webhooks/)

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
        preload=data.preload,
        wait=data.wait,
        callback_url=data.callback_url,
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
    preload: bool = False,
    wait: bool = False,
    callback_url: str = "",
    ip: str | None = None,
) -> Run:
    """Store the code (pasted, a file, or a project archive) and queue its first run; the task is
    sent only once the rows are committed. Everything is checked before anything is stored: the
    input (ValidationError), then the owner's quotas (QuotaExceeded), counted and inserted under
    the owner's lock so parallel submissions cannot pass a quota together. wait=True: over the
    concurrent-run quota the run waits in the owner's queue instead of being refused.
    `ip`: the client's address, for the audit log."""
    clean_name = submission_name_clean(name)
    argv = [] if argv is None else argv
    run_inputs_validate(stdin=stdin, argv=argv)
    callback_url = callback_url_clean(callback_url)
    callback_ready(owner=owner, url=callback_url)
    quotas = quotas_for(owner)
    source = source_check(code=code, archive=archive, archive_name=archive_name, entrypoint=entrypoint, quotas=quotas)
    code, entry = source.code, source.entrypoint
    limits = limits_build(wall_seconds=wall_seconds, memory_mb=memory_mb, quotas=quotas)
    with transaction.atomic():
        owner_lock(owner)
        quota_check_new_run(
            user=owner,
            quotas=quotas,
            wall_seconds=limits.wall_seconds,
            upload_bytes=upload_size(code=code, stdin=stdin, archive=archive),
            wait=wait,
        )
        submission = Submission.objects.create(
            owner=owner,
            name=clean_name,
            code=code,
            archive=archive,
            archive_name=archive_name if archive is not None else "",
            entrypoint=entry,
            stdin=stdin,
            argv=argv,
            preload=preload,
            callback_url=callback_url,
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


@dataclass(frozen=True)
class CheckedSource:
    code: str  # the entry point's text
    entrypoint: str
    files: dict[str, bytes] | None  # a project's files; None for code sent as text


def source_check(
    *, code: str | None, archive: bytes | None, archive_name: str, entrypoint: str | None, quotas
) -> CheckedSource:
    """Check pasted code or a project archive against the site's and the owner's limits."""
    if (code is None) == (archive is None):
        raise ValidationError({"code": "give exactly one of pasted code, a .py file or a project archive"})
    ceilings = run_ceilings(quotas)
    if archive is None:
        assert code is not None
        code_validate(code, ceiling=ceilings.code_bytes)
        return CheckedSource(code=code, entrypoint="main.py", files=None)
    archive_size_validate(archive, ceiling=ceilings.archive_bytes)
    entry = entrypoint_clean(entrypoint)
    files = project_files(archive=archive, archive_name=archive_name, entrypoint=entry)
    try:
        text = files[entry].decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError({"entrypoint": f"{entry!r} is not UTF-8 text"}) from None
    code_validate(text, field="entrypoint")
    return CheckedSource(code=text, entrypoint=entry, files=files)


def _run_create(*, submission: Submission, limits: sandbox.Limits) -> Run:
    run = Run.objects.create(
        submission=submission,
        wall_seconds=limits.wall_seconds,
        memory_bytes=limits.memory_bytes,
        stdout_limit_bytes=limits.stdout_bytes,
        stderr_limit_bytes=limits.stderr_bytes,
    )
    log_bind(run_id=run.pk)  # the rest of this request is about the new run
    lifecycle.run_send_on_commit(run.pk)
    lifecycle.publish_status_on_commit(run.pk, created=run)  # open run lists show it while it waits
    return run


class RunNotCancellable(Exception):
    """The run has already ended."""


def run_cancel(*, run: Run, actor=None, ip: str | None = None) -> Run:
    """Cancel a queued run at once; ask the worker to stop a running one (it ends within 1 s).
    `actor` (who asked; None for the system) and `ip` go to the audit log."""
    for _ in range(3):  # the run may move on between the two conditional updates: look again
        now = timezone.now()
        if lifecycle.transition(
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
    if submission.archive_expired_at is not None:
        raise ValidationError(
            {
                "submission": f"its uploaded project was deleted on {submission.archive_expired_at:%Y-%m-%d} "
                "(runs' files are kept for a limited time): submit the project again"
            }
        )
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


@transaction.atomic
def submission_set_pinned(*, actor, submission: Submission, pinned: bool, request=None) -> bool:
    """An admin's choice: retention keeps (or no longer keeps) this submission's archive and its
    runs' output. Output already expired stays gone. True if it changed."""
    changed = Submission.objects.filter(pk=submission.pk).exclude(pinned=pinned).update(pinned=pinned)
    submission.pinned = pinned
    if changed:
        audit.audit_record(
            actor=actor,
            action=audit.PIN_CHANGE,
            target=f"submission:{submission.pk}",
            request=request,
            data={"pinned": pinned},
        )
    return bool(changed)
