"""Writes: creating submissions and runs, and every run status transition.

Transitions are conditional UPDATEs (`filter(status=...).update(...)`) whose row count decides the
outcome, so a repeated Celery delivery or a race between two workers changes nothing twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

import sandbox
from evaluations.models import Run, RunReason, RunStatus, Submission
from sandbox.archive import unpack_archive

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
MIN_MEMORY_MB = 32
MIN_WALL_SECONDS = 0.1
# How long past its wall limit a run may stay "running" before it is declared lost.
LOST_RUN_GRACE_SECONDS = 120
# How many waiting runs are told their new queue position when the queue moves.
QUEUE_UPDATES = 50


def limits_build(*, wall_seconds: float | None, memory_mb: int | None) -> sandbox.Limits:
    """Validate user-requested limits against the site's ranges and return sandbox Limits."""
    errors: dict[str, str] = {}
    max_wall = settings.CRUCIBLE_MAX_WALL_SECONDS
    max_mb = settings.CRUCIBLE_MAX_MEMORY_MB
    wall = settings.CRUCIBLE_DEFAULT_WALL_SECONDS if wall_seconds is None else wall_seconds
    memory = settings.CRUCIBLE_DEFAULT_MEMORY_MB if memory_mb is None else memory_mb
    # `not (a <= x <= b)` is also true for NaN.
    if not (MIN_WALL_SECONDS <= wall <= max_wall):
        errors["wall_seconds"] = f"must be between {MIN_WALL_SECONDS:g} and {max_wall:g} seconds, got {wall:g}"
    if not (MIN_MEMORY_MB <= memory <= max_mb):
        errors["memory_mb"] = f"must be between {MIN_MEMORY_MB} and {max_mb} MiB, got {memory}"
    if errors:
        raise ValidationError(errors)
    memory_bytes = int(memory) * MiB
    output = settings.CRUCIBLE_OUTPUT_LIMIT_BYTES
    try:
        return sandbox.Limits(
            wall_seconds=float(wall),
            memory_bytes=memory_bytes,
            tmp_bytes=min(sandbox.Limits.tmp_bytes, memory_bytes // 2),
            stdout_bytes=output,
            stderr_bytes=output,
        )
    except sandbox.InvalidRequest as exc:
        raise ValidationError({exc.field: exc.message}) from exc


def code_validate(code: str, *, field: str = "code") -> None:
    max_bytes = settings.CRUCIBLE_MAX_CODE_BYTES
    if not code.strip():
        raise ValidationError({field: "must not be empty: paste Python code or upload a .py file"})
    try:
        size = len(code.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError({field: "is not valid UTF-8 text"}) from None
    if size > max_bytes:
        raise ValidationError({field: f"is {size} bytes; the limit is {max_bytes} bytes"})
    if "\x00" in code:
        raise ValidationError({field: "contains a NUL byte; Python source cannot"})


def name_clean(name: str | None) -> str:
    name = (name or "").strip() or "untitled"
    if len(name) > 200:
        raise ValidationError({"name": f"must be at most 200 characters, got {len(name)}"})
    if "\x00" in name:
        raise ValidationError({"name": "contains a NUL byte"})
    return name


MAX_ARGS = 256
MAX_ARG_CHARS = 4096


def project_files(*, archive: bytes, archive_name: str, entrypoint: str) -> dict[str, bytes]:
    """The checked files of a project archive; ValidationError naming the offending entry."""
    try:
        files = unpack_archive(
            archive,
            archive_name,
            max_entries=settings.CRUCIBLE_MAX_PROJECT_FILES,
            max_total_bytes=settings.CRUCIBLE_MAX_PROJECT_BYTES,
        )
    except sandbox.InvalidRequest as exc:
        raise ValidationError({"file": exc.message}) from exc
    if entrypoint not in files:
        listed = ", ".join(sorted(n for n in files if n.endswith(".py"))[:20]) or "no .py files"
        raise ValidationError({"entrypoint": f"{entrypoint!r} is not in the archive; its Python files: {listed}"})
    return files


def entrypoint_clean(entrypoint: str | None) -> str:
    entrypoint = (entrypoint or "").strip() or "main.py"
    try:
        sandbox.check_relative_path(entrypoint)
    except sandbox.InvalidRequest:
        raise ValidationError(
            {"entrypoint": f"must be a relative path inside the project, got {entrypoint!r}"}
        ) from None
    if not entrypoint.endswith(".py") or len(entrypoint) > 255:
        raise ValidationError({"entrypoint": "must name a .py file (at most 255 characters)"})
    return entrypoint


def run_inputs_validate(*, stdin: str, argv: list[str]) -> None:
    max_stdin = settings.CRUCIBLE_MAX_STDIN_BYTES
    try:
        size = len(stdin.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError({"stdin": "is not valid UTF-8 text"}) from None
    if size > max_stdin:
        raise ValidationError({"stdin": f"is {size} bytes; the limit is {max_stdin} bytes"})
    if "\x00" in stdin:
        raise ValidationError({"stdin": "contains a NUL byte"})
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValidationError({"argv": "must be a list of strings"})
    if len(argv) > MAX_ARGS or any(len(a) > MAX_ARG_CHARS or "\x00" in a for a in argv):
        raise ValidationError(
            {"argv": f"at most {MAX_ARGS} arguments of at most {MAX_ARG_CHARS} characters, without NUL"}
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
) -> Run:
    """Store the code (pasted, a file, or a project archive) and queue its first run; the task is
    sent only once the rows are committed. Everything is checked before anything is stored."""
    clean_name = name_clean(name)
    argv = [] if argv is None else argv
    run_inputs_validate(stdin=stdin, argv=argv)
    if (code is None) == (archive is None):
        raise ValidationError({"code": "give exactly one of pasted code, a .py file or a project archive"})
    if archive is not None:
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
        code_validate(code)
    limits = limits_build(wall_seconds=wall_seconds, memory_mb=memory_mb)
    with transaction.atomic():
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
    return run


def _run_create(*, submission: Submission, limits: sandbox.Limits) -> Run:
    from evaluations.tasks import run_execute

    run = Run.objects.create(
        submission=submission,
        wall_seconds=limits.wall_seconds,
        memory_bytes=limits.memory_bytes,
        stdout_limit_bytes=limits.stdout_bytes,
        stderr_limit_bytes=limits.stderr_bytes,
    )
    transaction.on_commit(lambda: run_execute.delay(run.pk))
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


def run_cancel(*, run: Run) -> Run:
    """Cancel a queued run at once; ask the worker to stop a running one (it ends within 1 s)."""
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
            break
        if Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(cancel_requested_at=now):
            break
        run.refresh_from_db()
        if run.is_terminal:
            raise RunNotCancellable(f"run {run.pk} has already ended ({run.status})")
    run.refresh_from_db()
    return run


def run_cancel_requested(*, run_id: int) -> bool:
    return Run.objects.filter(pk=run_id, cancel_requested_at__isnull=False).exists()


def run_rerun(*, run: Run, wall_seconds: float | None = None, memory_mb: int | None = None) -> Run:
    """A new run of the same submission, with the given run's limits unless others are given."""
    limits = limits_build(
        wall_seconds=run.wall_seconds if wall_seconds is None else wall_seconds,
        memory_mb=run.memory_bytes // MiB if memory_mb is None else memory_mb,
    )
    with transaction.atomic():
        return _run_create(submission=run.submission, limits=limits)


def _publish_queue_positions() -> None:
    """The queue moved: tell the first waiting runs' pages their new position, in one query and
    one send (run lists do not show positions, so owners' list sockets are not bothered)."""
    from evaluations import realtime, selectors

    waiting = Run.objects.filter(status=RunStatus.QUEUED).order_by("queued_at", "id")[:QUEUE_UPDATES]
    realtime.send(
        [
            (realtime.run_group(run.pk), realtime.status_event(selectors.run_status_payload(run=run, queue_position=i)))
            for i, run in enumerate(waiting)
        ]
    )


def _publish_status_on_commit(run_id: int) -> None:
    def publish() -> None:
        from evaluations import realtime, selectors

        run = Run.objects.select_related("submission").filter(pk=run_id).first()
        if run is not None:
            realtime.publish_status(
                run_id=run_id, owner_id=run.submission.owner_id, payload=selectors.run_status_payload(run=run)
            )

    transaction.on_commit(publish)
