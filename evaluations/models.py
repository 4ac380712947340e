"""Submissions (the code) and runs (one execution of it, with its outcome and output)."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

import sandbox
from sandbox.contract import MiB

# The vocabulary is defined once, in sandbox.contract; these choices are built from it.
RunStatus = models.TextChoices("RunStatus", [(s.name, s.value) for s in sandbox.Status])
RunReason = models.TextChoices("RunReason", [(r.name, r.value) for r in sandbox.Reason])
TERMINAL_STATUSES = [s.value for s in sandbox.Status if s.is_terminal]


class Submission(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="submissions")
    name = models.CharField(max_length=200)
    # The entry point's source (for a project upload: the text of its entry point file).
    code = models.TextField()
    # A project upload as received (.zip/.tar.gz/.tar), checked at submission and unpacked into
    # the sandbox's /code for each run; NULL for pasted or single-file code.
    archive = models.BinaryField(null=True, blank=True)
    archive_name = models.CharField(max_length=255, blank=True, default="")
    entrypoint = models.CharField(max_length=255, default="main.py")
    stdin = models.TextField(blank=True, default="")
    argv = models.JSONField(default=list, blank=True)
    # The owner's choice: teammates may read its runs (read-only).
    shared_with_team = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"


class Run(models.Model):
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    # NULL, not "", while a run has no reason: the API reports it as null.
    reason = models.CharField(max_length=32, choices=RunReason.choices, null=True, blank=True)  # noqa: DJ001
    detail = models.TextField(blank=True, default="")
    exit_code = models.IntegerField(null=True, blank=True)

    # Requested limits (the sandbox's defaults apply to the ones not stored here).
    wall_seconds = models.FloatField()
    memory_bytes = models.BigIntegerField()
    stdout_limit_bytes = models.BigIntegerField()
    stderr_limit_bytes = models.BigIntegerField()

    # Usage, as measured from the run's cgroup.
    cpu_seconds = models.FloatField(null=True, blank=True)
    peak_memory_bytes = models.BigIntegerField(null=True, blank=True)
    peak_processes = models.IntegerField(null=True, blank=True)  # inside the sandbox (threads count too)

    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # The output itself lives in the log store (evaluations/runs/logstore.py), with byte offsets.
    stdout_bytes = models.BigIntegerField(default=0)  # written by the program, may exceed what is kept
    stderr_bytes = models.BigIntegerField(default=0)
    stdout_truncated = models.BooleanField(default=False)
    stderr_truncated = models.BooleanField(default=False)

    # Set by a cancel request; the worker running the sandbox watches it.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    # Who runs it, and until when that claim holds unless renewed (runs/lifecycle.py): a running run
    # whose lease has expired lost its worker, and the reconciler ends it.
    worker = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # When its task message was last sent, and how many times a worker took one to claim it.
    sent_at = models.DateTimeField(null=True, blank=True)
    deliveries = models.PositiveIntegerField(default=0)

    engine = models.CharField(max_length=32, blank=True, default="")
    runtime_version = models.CharField(max_length=200, blank=True, default="")
    image_digest = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        ordering = ["-queued_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=RunStatus.values), name="run_status_valid"),
            models.CheckConstraint(
                condition=models.Q(reason__isnull=True) | models.Q(reason__in=RunReason.values),
                name="run_reason_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"run #{self.pk} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def queue_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.started_at - self.queued_at).total_seconds()

    @property
    def run_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


# --- Accounts: roles, teams, quotas, tokens, audit -------------------------------------------------


class Role(models.TextChoices):
    RESEARCHER = "researcher", "Researcher"  # submits; sees, cancels and re-runs own runs
    REVIEWER = "reviewer", "Reviewer"  # reads every run, submits nothing
    ADMIN = "admin", "Admin"  # everything


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.RESEARCHER)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="members")

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(role__in=Role.values), name="profile_role_valid")]

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"


# Smaller than this holds no useful program; the sandbox has no limit of its own for the upload.
MIN_UPLOAD_BYTES = 1024


def _sandbox_range(limit: str, *, what: str, unit: str, scale: int = 1) -> list:
    """Validators for a per-run quota: within what the sandbox accepts for `limit` (sandbox.LIMIT_SPECS),
    or every run under the quota would be refused with an error about the sandbox."""
    spec = sandbox.LIMIT_SPECS[limit]
    if spec.integer:
        low, high = spec.minimum // scale, spec.maximum // scale
    else:
        low, high = spec.minimum / scale, spec.maximum / scale
    return [
        MinValueValidator(low, f"Must be at least {low} {unit}: the sandbox's minimum for {what}."),
        MaxValueValidator(high, f"Must be at most {high} {unit}: the sandbox's maximum for {what}."),
    ]


class QuotaFields(models.Model):
    """The quotas; per role in QuotaPolicy, overridable per user in QuotaOverride (NULL = the role's).
    Per-run quotas must lie within what the sandbox accepts: below its minimum no run could start."""

    concurrent_runs = models.PositiveIntegerField(null=True, blank=True)
    runs_per_day = models.PositiveIntegerField(null=True, blank=True)
    cpu_seconds_per_day = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0, "Must not be negative (0 lets no run start).")]
    )
    max_wall_seconds = models.FloatField(
        null=True, blank=True, validators=_sandbox_range("wall_seconds", what="wall time", unit="s")
    )
    max_memory_mb = models.PositiveIntegerField(
        null=True, blank=True, validators=_sandbox_range("memory_bytes", what="memory", unit="MiB", scale=MiB)
    )
    max_output_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, validators=_sandbox_range("stdout_bytes", what="output per stream", unit="bytes")
    )
    max_upload_bytes = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        validators=[
            MinValueValidator(MIN_UPLOAD_BYTES, f"Must be at least {MIN_UPLOAD_BYTES} bytes: less holds no program.")
        ],
    )

    QUOTA_NAMES = (
        "concurrent_runs",
        "runs_per_day",
        "cpu_seconds_per_day",
        "max_wall_seconds",
        "max_memory_mb",
        "max_output_bytes",
        "max_upload_bytes",
    )

    class Meta:
        abstract = True


class QuotaPolicy(QuotaFields):
    role = models.CharField(max_length=16, choices=Role.choices, unique=True)

    class Meta:
        verbose_name_plural = "quota policies"

    def __str__(self) -> str:
        return f"quotas for {self.role}s"


class QuotaOverride(QuotaFields):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota_override")

    def __str__(self) -> str:
        return f"quota override for {self.user}"


class ApiToken(models.Model):
    """A named API token. Only its SHA-256 is stored; the key is shown once, at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)  # shown in lists, so a user can tell tokens apart
    key_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class AuditEvent(models.Model):
    """Who did what, when, from where. Written by services; read-only everywhere."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True, default="")  # kept if the user is deleted
    action = models.CharField(max_length=40, db_index=True)
    target = models.CharField(max_length=200, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.target}"


class WorkerHeartbeat(models.Model):
    """A process that says it is alive: a worker (runs sandboxes) or the reconciler."""

    class Kind(models.TextChoices):
        WORKER = "worker", "Worker"
        RECONCILER = "reconciler", "Reconciler"

    hostname = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.WORKER)
    started = models.DateTimeField()
    last_seen = models.DateTimeField()
    concurrency = models.PositiveIntegerField(default=0)
    # Why it takes no runs (e.g. it refused to start: no sandbox runtime); "" while it takes runs.
    problem = models.CharField(max_length=500, blank=True, default="")

    def __str__(self) -> str:
        return self.hostname


class IdempotentRequest(models.Model):
    """The first answer to a submission sent with an `Idempotency-Key` header, replayed to retries."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)  # SHA-256 of the request: a reused key must match it
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotent_request_unique_key")]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"
