"""Quotas: what a user may use (their role's policy, overridden per user), what they used today,
and the checks the submission services make under a per-user row lock.

Days are UTC days: the daily counts reset at the next UTC midnight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import BigIntegerField, Count, F, Func, Q, Subquery, Sum
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

import sandbox
from evaluations.accounts.roles import cached_profile, role_from, stored_role
from evaluations.models import Batch, Profile, QuotaFields, QuotaOverride, QuotaPolicy, Run, RunStatus, Submission

LABELS = {
    "concurrent_runs": "concurrent runs",
    "runs_per_day": "runs per day",
    "cpu_seconds_per_day": "CPU seconds per day",
    "max_wall_seconds": "wall time per run",
    "max_memory_mb": "memory per run",
    "max_output_bytes": "output per run",
    "max_upload_bytes": "code/upload size",
    "storage_bytes": "storage",
}
ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
# Every run gets the sandbox's default CPU allowance (evaluations/runs/execution.py asks for no other).
CPU_CORES_PER_RUN = sandbox.Limits.cpu_cores


def worst_case_cpu_seconds(wall_seconds: float) -> float:
    """The most CPU time a run can be charged: its wall-time limit on every core it may use."""
    return wall_seconds * CPU_CORES_PER_RUN


@dataclass(frozen=True)
class Quotas:
    """A user's effective quotas. None: no quota of that kind (the site's maxima still apply)."""

    role: str
    concurrent_runs: int | None = None
    runs_per_day: int | None = None
    cpu_seconds_per_day: float | None = None
    max_wall_seconds: float | None = None
    max_memory_mb: int | None = None
    max_output_bytes: int | None = None
    max_upload_bytes: int | None = None
    storage_bytes: int | None = None


assert {f.name for f in fields(Quotas)} - {"role"} == set(QuotaFields.QUOTA_NAMES)


def quotas_for(user) -> Quotas:
    """Each quota from the user's override where it is not NULL, else from their role's policy.
    A role without a policy row has no quotas (only the site's maxima): the migration seeds one
    per role, so that is an admin's explicit choice."""
    return quotas_for_users([user])[user.pk]


def quotas_for_users(users) -> dict[int, Quotas]:
    """quotas_for of each user, by id, in two queries whatever their number (plus their profiles,
    unless cached: see roles.remember_profile)."""
    users = list(users)
    roles = {user.pk: role_from(user, cached_profile(user)) for user in users}
    policies = {p.role: p for p in QuotaPolicy.objects.filter(role__in=set(roles.values()))}
    overrides = {o.user_id: o for o in QuotaOverride.objects.filter(user_id__in=roles)}
    quotas = {}
    for user_id, role in roles.items():
        policy, override = policies.get(role), overrides.get(user_id)
        values = {}
        for name in QuotaFields.QUOTA_NAMES:
            value = getattr(override, name) if override is not None else None
            if value is None and policy is not None:
                value = getattr(policy, name)
            values[name] = value
        quotas[user_id] = Quotas(role=role, **values)
    return quotas


# --- Per-run ceilings: the smaller of the site's maximum and the user's quota ----------------------


@dataclass(frozen=True)
class Ceiling:
    value: float
    from_quota: bool  # the user's quota is what binds (not the site's maximum)

    def why(self) -> str:
        return " (your quota)" if self.from_quota else ""


def _ceiling(site: float, quota: float | None) -> Ceiling:
    if quota is not None and quota < site:
        return Ceiling(quota, True)
    return Ceiling(site, False)


@dataclass(frozen=True)
class RunCeilings:
    wall_seconds: Ceiling
    memory_mb: Ceiling
    # The output cap per stream: it is not requested, every run gets this much.
    output_bytes: Ceiling
    code_bytes: Ceiling  # pasted code or a single .py file
    archive_bytes: Ceiling  # a project upload


def run_ceilings(quotas: Quotas | None) -> RunCeilings:
    """quotas=None: only the site's maxima (rows made outside a user's request, e.g. in tests)."""
    q = quotas or Quotas(role="")
    return RunCeilings(
        wall_seconds=_ceiling(settings.CRUCIBLE_MAX_WALL_SECONDS, q.max_wall_seconds),
        memory_mb=_ceiling(settings.CRUCIBLE_MAX_MEMORY_MB, q.max_memory_mb),
        output_bytes=_ceiling(settings.CRUCIBLE_OUTPUT_LIMIT_BYTES, q.max_output_bytes),
        code_bytes=_ceiling(settings.CRUCIBLE_MAX_CODE_BYTES, q.max_upload_bytes),
        archive_bytes=_ceiling(settings.CRUCIBLE_MAX_UPLOAD_BYTES, q.max_upload_bytes),
    )


# --- Usage today ------------------------------------------------------------------------------------


def day_start(now: datetime | None = None) -> datetime:
    now = (now or timezone.now()).astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def resets_at(now: datetime | None = None) -> datetime:
    """When the daily counts start again from zero: the next UTC midnight."""
    return day_start(now) + timedelta(days=1)


@dataclass(frozen=True)
class Usage:
    concurrent_runs: int  # queued or running, whenever they were queued
    runs_today: int  # queued since UTC midnight, except those that ended in error (our fault)
    cpu_seconds_today: float  # of those same runs, as far as they have finished
    resets_at: datetime
    # Of those same runs, the ones still queued or running, at their worst case: their CPU time is
    # known only when they end, and counting it then would let parallel runs pass the quota together.
    cpu_seconds_reserved: float = 0.0


def usage_of(user, *, now: datetime | None = None) -> Usage:
    """One query. Counted at the moment it runs: call it after taking the user's lock."""
    start = day_start(now)
    today = Q(queued_at__gte=start) & ~Q(status=RunStatus.ERROR)
    active = Q(status__in=ACTIVE_STATUSES)
    # Only runs in flight or queued today count: the filter lets the status and queued_at indexes
    # find them instead of reading every run the user has had.
    runs = Run.objects.filter(active | Q(queued_at__gte=start), submission__owner_id=user.pk)
    row = runs.aggregate(
        concurrent=Count("pk", filter=active),
        today=Count("pk", filter=today),
        cpu=Sum("cpu_seconds", filter=today),
        # Runs queued before midnight are charged to their own day, so they reserve nothing today.
        reserved_wall=Sum("wall_seconds", filter=today & active),
    )
    return Usage(
        concurrent_runs=row["concurrent"],
        runs_today=row["today"],
        cpu_seconds_today=float(row["cpu"] or 0.0),
        resets_at=start + timedelta(days=1),
        cpu_seconds_reserved=worst_case_cpu_seconds(float(row["reserved_wall"] or 0.0)),
    )


class OctetLength(Func):
    """A text or binary column's size in bytes (LENGTH counts characters of text)."""

    function = "OCTET_LENGTH"
    output_field = BigIntegerField()

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="LENGTH(CAST(%(expressions)s AS BLOB))", **extra)


@dataclass(frozen=True)
class StorageUsage:
    uploads: int  # code, stdin and archives of the user's submissions, and their batches' inputs
    output: int  # what is kept of their runs' stdout and stderr, until it expires

    @property
    def total(self) -> int:
        return self.uploads + self.output


def _size(column: str):
    return Coalesce(OctetLength(column), 0)


def _owned_sum(queryset, owner: str, user_id: int, total) -> Subquery:
    """SUM(total) of the rows of `queryset` whose `owner` is the user, as a subquery. The id is a
    value, not the outer row's: the planner then uses the owner index for a user with few rows."""
    return Subquery(queryset.filter(**{owner: user_id}).values(owner).annotate(n=total).values("n"))


def storage_of(user) -> StorageUsage:
    """One query. Metric samples are not counted: they are small and bounded by the wall time."""
    # A run's byte counts are what the program wrote; the store keeps at most its limit of each.
    kept = Least(F("stdout_bytes"), F("stdout_limit_bytes")) + Least(F("stderr_bytes"), F("stderr_limit_bytes"))
    row = (
        get_user_model()
        .objects.filter(pk=user.pk)
        .values(
            uploads=_owned_sum(
                Submission.objects, "owner_id", user.pk, Sum(_size("code") + _size("stdin") + _size("archive"))
            ),
            batch_inputs=_owned_sum(Batch.objects, "owner_id", user.pk, Sum("inputs_bytes")),
            output=_owned_sum(
                Run.objects.filter(output_expired_at__isnull=True), "submission__owner_id", user.pk, Sum(kept)
            ),
        )
        .first()
    ) or {}
    uploads = int(row.get("uploads") or 0) + int(row.get("batch_inputs") or 0)
    return StorageUsage(uploads=uploads, output=int(row.get("output") or 0))


def upload_size(*, code: str, stdin: str, archive: bytes | None) -> int:
    """What a submission adds to its owner's storage, counted as storage_of counts it."""
    return len(code.encode("utf-8")) + len(stdin.encode("utf-8")) + (len(archive) if archive is not None else 0)


def _storage_hint() -> str:
    days = settings.CRUCIBLE_RETENTION_DAYS
    if days <= 0:
        return "Ask an admin for a larger storage quota."
    return f"Run output is deleted {days:g} days after its run ends, which frees space; or ask an admin for more."


def _megabytes(n: float) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


# --- Enforcement ------------------------------------------------------------------------------------


class QuotaExceeded(Exception):
    """A new run would go over one of the user's quotas. `resets_at` is None for concurrent runs,
    which free up when a run ends rather than at a time. For CPU seconds, `usage` includes
    `reserved` (the worst case of the runs still queued or running) and `requested` is the new
    run's own worst case."""

    def __init__(
        self,
        *,
        quota: str,
        limit: float,
        usage: float,
        resets_at: datetime | None,
        reserved: float = 0.0,
        requested: float | None = None,
    ) -> None:
        self.quota = quota
        self.limit = limit
        self.usage = usage
        self.resets_at = resets_at
        self.reserved = reserved
        self.requested = requested
        super().__init__(self.message)

    @property
    def message(self) -> str:
        label = LABELS[self.quota]
        if self.quota == "concurrent_runs" and self.limit == 0:
            return f"Quota reached: {label}. Your quota lets none of your runs run: ask an admin for a larger one."
        if self.quota == "concurrent_runs":
            return (
                f"Quota reached: {label}. {self.usage:g} of your {self.limit:g} runs are queued or running; "
                "wait for one to finish (or cancel one), then submit again."
            )
        if self.quota == "storage_bytes":
            adds = f", and this submission adds {_megabytes(self.requested)}" if self.requested else ""
            return (
                f"Quota reached: {label}. Your code, uploads and kept run output take {_megabytes(self.usage)} "
                f"of your {_megabytes(self.limit)}{adds}. {_storage_hint()}"
            )
        when = f"it resets at {self.resets_at:%Y-%m-%d %H:%M} UTC" if self.resets_at else "it does not reset"
        if self.quota == "runs_per_day":
            used = (
                f"You have started {self.usage:g} of your {self.limit:g} runs today "
                "(runs that end in error do not count)"
            )
            if self.requested:
                used += f", and this batch has {self.requested:g} runs (a batch is made whole or not at all)"
        else:
            used = f"Your runs today used {self.usage:.1f} of your {self.limit:g} CPU seconds"
            cores = f"{CPU_CORES_PER_RUN:g} CPU core{'s' if CPU_CORES_PER_RUN != 1 else ''}"
            if self.reserved:
                used += (
                    f" (counting {self.reserved:.1f} reserved by runs still queued or running: "
                    f"their wall-time limit × {cores}, until they end)"
                )
            if self.requested is not None:
                used += (
                    f", and this run could use up to {self.requested:g} more (its wall-time limit × {cores}; "
                    "a lower wall-time limit needs less)"
                )
        return f"Quota reached: {label}. {used}; {when}."

    def retry_after_seconds(self, now: datetime | None = None) -> int | None:
        if self.resets_at is None:
            return None
        return max(1, math.ceil((self.resets_at - (now or timezone.now())).total_seconds()))

    def as_dict(self) -> dict:
        return {
            "detail": self.message,
            "quota": self.quota,
            "limit": self.limit,
            "usage": self.usage,
            "resets_at": self.resets_at.isoformat().replace("+00:00", "Z") if self.resets_at else None,
        }


def owner_lock(user) -> None:
    """Lock the user's profile row (made first if missing) until the surrounding transaction ends:
    one submission per user at a time passes from counting to inserting. On SQLite, where
    SELECT ... FOR UPDATE does not exist, the IMMEDIATE transaction already holds the write lock."""
    # get_or_create copes with two transactions inserting the profile at once (savepoint + get).
    # The row gets the role the user has now (admin for a superuser without one), not the model's
    # default: a researcher row would show, and be saved back, as their role on their admin page.
    lock = Profile.objects.select_for_update().filter(user_id=user.pk).values_list("pk", flat=True)
    if not list(lock):
        Profile.objects.get_or_create(user_id=user.pk, defaults={"role": lambda: stored_role(user)})
        list(lock.all())  # a fresh query: the first one's (empty) result is cached


def quota_check_new_run(
    *, user, quotas: Quotas, wall_seconds: float, upload_bytes: int = 0, now: datetime | None = None, wait: bool = False
) -> Usage:
    """Raise QuotaExceeded if one more run, with this wall-time limit (and a new submission of
    `upload_bytes`), would go over a quota. Call inside the transaction that inserts the run, after
    owner_lock(). wait=True: the run may wait in the user's queue beyond their concurrent runs."""
    return quota_check_new_runs(
        user=user, quotas=quotas, wall_seconds=[wall_seconds], upload_bytes=upload_bytes, now=now, wait=wait
    )


def quota_check_new_runs(
    *,
    user,
    quotas: Quotas,
    wall_seconds: list[float],
    upload_bytes: int = 0,
    now: datetime | None = None,
    wait: bool = False,
) -> Usage:
    """quota_check_new_run for several runs at once (a batch): they must all fit, or none is made.
    Their concurrency is not checked with wait=True: the scheduler starts no more than the quota."""
    usage = usage_of(user, now=now)
    count = len(wall_seconds)
    # A run's output is known only as it is written: a user already at their storage quota starts
    # no run, and a new submission must fit in what is left.
    if quotas.storage_bytes is not None:
        stored = storage_of(user).total
        if stored >= quotas.storage_bytes or stored + upload_bytes > quotas.storage_bytes:
            raise QuotaExceeded(
                quota="storage_bytes",
                limit=quotas.storage_bytes,
                usage=stored,
                resets_at=None,
                requested=upload_bytes or None,
            )
    # Daily quotas first: waiting for a running run to end does not help with those.
    if quotas.runs_per_day is not None and usage.runs_today + count > quotas.runs_per_day:
        raise QuotaExceeded(
            quota="runs_per_day",
            limit=quotas.runs_per_day,
            usage=usage.runs_today,
            resets_at=usage.resets_at,
            requested=count if count > 1 else None,
        )
    # A run's CPU time is known only when it ends: runs in flight count at their worst case, and so
    # does the new one, so no number of parallel runs can take the day's total past the quota.
    if quotas.cpu_seconds_per_day is not None:
        committed = usage.cpu_seconds_today + usage.cpu_seconds_reserved
        requested = sum(worst_case_cpu_seconds(wall) for wall in wall_seconds)
        if committed + requested > quotas.cpu_seconds_per_day:
            raise QuotaExceeded(
                quota="cpu_seconds_per_day",
                limit=quotas.cpu_seconds_per_day,
                usage=committed,
                resets_at=usage.resets_at,
                reserved=usage.cpu_seconds_reserved,
                requested=requested,
            )
    # Waiting helps unless the quota is 0: then none of the user's runs would ever start.
    over = usage.concurrent_runs >= quotas.concurrent_runs if quotas.concurrent_runs is not None else False
    if over and (not wait or quotas.concurrent_runs == 0):
        raise QuotaExceeded(
            quota="concurrent_runs", limit=quotas.concurrent_runs, usage=usage.concurrent_runs, resets_at=None
        )
    return usage


# --- The usage page ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageRow:
    name: str
    label: str
    used: float
    limit: float | None
    unit: str

    @property
    def percent(self) -> int:
        if self.limit is None:
            return 0
        if self.limit <= 0:
            return 100
        return min(100, round(100 * self.used / self.limit))

    @property
    def level(self) -> str:
        """For the bar's colour: ok, near (80 % or more), full."""
        if self.limit is not None and self.used >= self.limit:
            return "full"
        return "near" if self.percent >= 80 else "ok"


@dataclass(frozen=True)
class UsageReport:
    quotas: Quotas
    usage: Usage
    rows: list[UsageRow]
    ceilings: RunCeilings
    storage: StorageUsage


def usage_report(user, *, now: datetime | None = None) -> UsageReport:
    quotas = quotas_for(user)
    usage = usage_of(user, now=now)
    rows = [
        UsageRow("concurrent_runs", LABELS["concurrent_runs"], usage.concurrent_runs, quotas.concurrent_runs, "runs"),
        UsageRow("runs_per_day", LABELS["runs_per_day"], usage.runs_today, quotas.runs_per_day, "runs"),
        UsageRow(
            "cpu_seconds_per_day",
            LABELS["cpu_seconds_per_day"],
            round(usage.cpu_seconds_today, 1),
            quotas.cpu_seconds_per_day,
            "CPU s",
        ),
    ]
    storage = storage_of(user)
    rows.append(UsageRow("storage_bytes", LABELS["storage_bytes"], storage.total, quotas.storage_bytes, "bytes"))
    return UsageReport(quotas=quotas, usage=usage, rows=rows, ceilings=run_ceilings(quotas), storage=storage)
