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
from evaluations import audit, realtime, selectors
from evaluations.models import Profile, Role, Run, RunReason, RunStatus, Submission, Team, WorkerHeartbeat
from evaluations.quotas import Ceiling, Quotas, owner_lock, quota_check_new_run, quotas_for, run_ceilings
from sandbox.archive import unpack_archive

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
# The smallest limits the sandbox accepts (the quota fields are validated against the same specs).
MIN_MEMORY_MB = sandbox.LIMIT_SPECS["memory_bytes"].minimum // MiB
MIN_WALL_SECONDS = sandbox.LIMIT_SPECS["wall_seconds"].minimum
# How long past its wall limit a run may stay "running" before it is declared lost.
LOST_RUN_GRACE_SECONDS = 120
# How many waiting runs are told their new queue position when the queue moves.
QUEUE_UPDATES = 50


def limits_build(*, wall_seconds: float | None, memory_mb: int | None, quotas: Quotas | None = None) -> sandbox.Limits:
    """Validate user-requested limits and return sandbox Limits. The maxima are the site's, or the
    user's quotas where those are lower; the output cap is not requested: every run gets the maximum."""
    errors: dict[str, str] = {}
    ceilings = run_ceilings(quotas)
    max_wall, max_mb = ceilings.wall_seconds.value, ceilings.memory_mb.value
    # A default above a user's maximum is lowered to it: leaving the field empty always works.
    wall = min(settings.CRUCIBLE_DEFAULT_WALL_SECONDS, max_wall) if wall_seconds is None else wall_seconds
    memory = min(settings.CRUCIBLE_DEFAULT_MEMORY_MB, max_mb) if memory_mb is None else memory_mb
    # `not (a <= x <= b)` is also true for NaN.
    if not (MIN_WALL_SECONDS <= wall <= max_wall):
        errors["wall_seconds"] = (
            f"must be between {MIN_WALL_SECONDS:g} and {max_wall:g} seconds{ceilings.wall_seconds.why()}, got {wall:g}"
        )
    if not (MIN_MEMORY_MB <= memory <= max_mb):
        errors["memory_mb"] = (
            f"must be between {MIN_MEMORY_MB} and {max_mb} MiB{ceilings.memory_mb.why()}, got {memory}"
        )
    if errors:
        raise ValidationError(errors)
    memory_bytes = int(memory) * MiB
    output = int(ceilings.output_bytes.value)
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


def code_validate(code: str, *, field: str = "code", ceiling: Ceiling | None = None) -> None:
    max_bytes = settings.CRUCIBLE_MAX_CODE_BYTES if ceiling is None else int(ceiling.value)
    why = ceiling.why() if ceiling is not None else ""
    if not code.strip():
        raise ValidationError({field: "must not be empty: paste Python code or upload a .py file"})
    try:
        size = len(code.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError({field: "is not valid UTF-8 text"}) from None
    if size > max_bytes:
        raise ValidationError({field: f"is {size} bytes; the limit is {max_bytes} bytes{why}"})
    if "\x00" in code:
        raise ValidationError({field: "contains a NUL byte; Python source cannot"})


def archive_size_validate(archive: bytes | memoryview, *, ceiling: Ceiling) -> None:
    if len(archive) > ceiling.value:
        raise ValidationError(
            {"file": f"is {len(archive)} bytes; the limit for a project is {int(ceiling.value)} bytes{ceiling.why()}"}
        )


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
    ip: str | None = None,
) -> Run:
    """Store the code (pasted, a file, or a project archive) and queue its first run; the task is
    sent only once the rows are committed. Everything is checked before anything is stored: the
    input (ValidationError), then the owner's quotas (QuotaExceeded), counted and inserted under
    the owner's lock so parallel submissions cannot pass a quota together.
    `ip`: the client's address, for the audit log."""
    clean_name = name_clean(name)
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
                run_id=run_id,
                owner_id=run.submission.owner_id,
                payload=selectors.run_status_payload(run=run),
                list_groups=selectors.run_list_audience(run=run),
            )

    transaction.on_commit(publish)


# --- Accounts: users, roles, teams, sharing. Every change is audited in its own transaction. ---------


class SelfLockout(ValidationError):
    """An admin tried to take their own access away (role or active flag)."""


def _user_target(user) -> str:
    return f"user:{user.get_username()}"


def _forget_cached_profile(user) -> None:
    user.__dict__.pop("_crucible_profile", None)  # permissions.py caches it on the user object


def _close_lost_access_on_commit() -> None:
    """Open websockets check again, once the change is visible to them, who may see what."""
    transaction.on_commit(realtime.access_changed)


@transaction.atomic
def user_create(*, actor, user, role: str = Role.RESEARCHER, team: Team | None = None, request=None, via: str):
    """Store a new user (an unsaved User, its password already set or made unusable by the form)
    with its role and team. `actor` None means the user signed up themselves."""
    if role not in Role.values:
        raise ValidationError({"role": f"must be one of {', '.join(Role.values)}, got {role!r}"})
    user.is_staff = role == Role.ADMIN
    user.is_superuser = False
    user.save()
    Profile.objects.create(user=user, role=role, team=team)
    audit.audit_record(
        actor=actor if actor is not None else user,
        action=audit.USER_CREATE,
        target=_user_target(user),
        request=request,
        data={
            "role": role,
            "team": team.name if team else None,
            "via": via,
            "can_log_in": user.has_usable_password(),
        },
    )
    return user


@transaction.atomic
def user_set_role(*, actor, user, role: str, request=None) -> bool:
    """Give `user` exactly one role. Admins get is_staff (they use the Django admin); anyone else
    loses is_staff and is_superuser, so no flag grants more than the role. True if it changed."""
    if role not in Role.values:
        raise ValidationError({"role": f"must be one of {', '.join(Role.values)}, got {role!r}"})
    old = selectors.user_role(user=user)
    if actor is not None and actor.pk == user.pk and role != old:
        raise SelfLockout({"role": "you cannot change your own role; ask another admin"})
    Profile.objects.update_or_create(user=user, defaults={"role": role})
    flags = {"is_staff": role == Role.ADMIN}
    if role != Role.ADMIN:
        flags["is_superuser"] = False
    type(user).objects.filter(pk=user.pk).update(**flags)
    for name, value in flags.items():
        setattr(user, name, value)
    _forget_cached_profile(user)
    if old == role:
        return False
    _close_lost_access_on_commit()
    audit.audit_record(
        actor=actor,
        action=audit.ROLE_CHANGE,
        target=_user_target(user),
        request=request,
        data={"from": old, "to": role},
    )
    return True


@transaction.atomic
def user_set_team(*, actor, user, team: Team | None, request=None) -> bool:
    profile = Profile.objects.filter(user_id=user.pk).select_related("team").first()
    old = profile.team if profile is not None else None
    if old == team:
        return False
    Profile.objects.update_or_create(
        user=user, defaults={"team": team}, create_defaults={"role": selectors.user_role(user=user), "team": team}
    )
    _forget_cached_profile(user)
    _close_lost_access_on_commit()
    audit.audit_record(
        actor=actor,
        action=audit.USER_CHANGE,
        target=_user_target(user),
        request=request,
        data={"team": {"from": old.name if old else None, "to": team.name if team else None}},
    )
    return True


# Fields an admin may change on a user through user_update (the password has its own forms).
USER_FIELDS = ("username", "first_name", "last_name", "email", "is_active")


@transaction.atomic
def user_update(*, actor, user, changes: dict, request=None) -> list[str]:
    """Apply field changes to a user; deactivation is audited as such, the rest as one change.
    Returns the names of the fields that changed."""
    unknown = set(changes) - set(USER_FIELDS)
    if unknown:
        raise ValueError(f"user_update cannot change {sorted(unknown)}")
    current = type(user).objects.filter(pk=user.pk).values(*USER_FIELDS).get()
    changed = {name: {"from": current[name], "to": value} for name, value in changes.items() if current[name] != value}
    if not changed:
        return []
    if changed.get("is_active", {}).get("to") is False and actor is not None and actor.pk == user.pk:
        raise SelfLockout({"is_active": "you cannot deactivate yourself; ask another admin"})
    type(user).objects.filter(pk=user.pk).update(**{name: change["to"] for name, change in changed.items()})
    for name, change in changed.items():
        setattr(user, name, change["to"])
    if "is_active" in changed:
        _close_lost_access_on_commit()
    rest = dict(changed)
    if rest.get("is_active", {}).get("to") is False:
        del rest["is_active"]
        audit.audit_record(actor=actor, action=audit.USER_DEACTIVATE, target=_user_target(user), request=request)
    if rest:
        audit.audit_record(actor=actor, action=audit.USER_CHANGE, target=_user_target(user), request=request, data=rest)
    return sorted(changed)


def user_deactivate(*, actor, user, request=None) -> bool:
    """Deactivate (never delete: the audit log and runs keep their owner). Their sessions and API
    tokens stop working at once, because both check is_active on every request, and the websockets
    they have open are closed (user_update tells them to check)."""
    return bool(user_update(actor=actor, user=user, changes={"is_active": False}, request=request))


@transaction.atomic
def submission_set_shared(*, actor, submission: Submission, shared: bool, request=None) -> bool:
    """The owner's choice: teammates may read this submission's runs (or no longer). True if it changed."""
    changed = (
        Submission.objects.filter(pk=submission.pk).exclude(shared_with_team=shared).update(shared_with_team=shared)
    )
    submission.shared_with_team = shared
    if changed and not shared:
        _close_lost_access_on_commit()  # teammates following its runs must stop
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
    """A worker says it is alive (evaluations/tasks.py, every few seconds); the ops page reads it."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname[:200],
        defaults={"started": started, "last_seen": now or timezone.now(), "concurrency": concurrency},
    )
