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
    # True: each run may start in a python3 that imported common modules already (docs/sandbox.md).
    preload = models.BooleanField(default=False)
    # The owner's choice: teammates may read its runs (read-only).
    shared_with_team = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    # An admin's choice: retention (runs/retention.py) keeps its archive and its runs' output.
    pinned = models.BooleanField(default=False)
    # When retention deleted the uploaded archive (the entry point's text in `code` stays).
    archive_expired_at = models.DateTimeField(null=True, blank=True)
    # Told when each of its runs ends (evaluations/webhooks/); "": the owner's default, if any.
    callback_url = models.CharField(max_length=2000, blank=True, default="")

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"


class Batch(models.Model):
    """One submission run over N inputs × M configurations (evaluations/batches/)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="batches")
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="batches")
    name = models.CharField(max_length=200)
    # [{"label", "wall_seconds", "memory_mb"}]: small, so kept whole; each run keeps its index.
    configs = models.JSONField(default=list)
    # What its inputs' texts add to the owner's storage (counted like a submission's stdin).
    inputs_bytes = models.BigIntegerField(default=0)
    # Told when each of its runs ends (evaluations/webhooks/); "": the submission's or owner's.
    callback_url = models.CharField(max_length=2000, blank=True, default="")
    # A re-run of another batch's failed runs points at it.
    rerun_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"batch {self.name} (#{self.pk})"


class BatchInput(models.Model):
    """One input of a batch: stdin text, or a project file as stdin, and arguments after the batch's."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="inputs")
    index = models.PositiveIntegerField()
    label = models.CharField(max_length=200, blank=True, default="")
    stdin = models.TextField(null=True, blank=True)  # noqa: DJ001 - NULL: the submission's stdin
    stdin_file = models.CharField(max_length=255, blank=True, default="")  # a file of the project
    argv = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["batch", "index"]
        constraints = [models.UniqueConstraint(fields=["batch", "index"], name="batch_input_unique_index")]

    def __str__(self) -> str:
        return f"input {self.index} of batch #{self.batch_id}"


class Run(models.Model):
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="runs")
    # A batch's run: which input and which of the batch's configs it runs (NULL for a single run).
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="runs")
    batch_input = models.ForeignKey(BatchInput, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    batch_config = models.PositiveIntegerField(null=True, blank=True)
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
    # From the worker's claim to the sandbox having booted, stored with the run's end; NULL if it
    # never booted or the engine does not say. /metrics builds its histogram from it (any host).
    sandbox_start_seconds = models.FloatField(null=True, blank=True)

    # The output itself is in OutputChunk rows (evaluations/runs/logstore.py), with byte offsets.
    stdout_bytes = models.BigIntegerField(default=0)  # written by the program, may exceed what is kept
    stderr_bytes = models.BigIntegerField(default=0)
    stdout_truncated = models.BooleanField(default=False)
    stderr_truncated = models.BooleanField(default=False)
    # When retention deleted its output and metric samples; the row and its usage stay.
    output_expired_at = models.DateTimeField(null=True, blank=True)

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
        indexes = [
            # Lists walk it newest first, and a user's runs of today are found in it, however
            # many runs they have had: without it each page and each submission read them all.
            models.Index(fields=["-queued_at", "-id"], name="run_queued_idx"),
            # Retention's hourly look for old output: runs whose output is gone leave the index.
            models.Index(
                fields=["finished_at"], condition=models.Q(output_expired_at__isnull=True), name="run_output_kept_idx"
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


# --- Run output and metric samples (evaluations/runs/logstore.py) ---------------------------------

STREAM_CHOICES = [(s.value, s.value) for s in sandbox.Stream]


class OutputChunk(models.Model):
    """Bytes [offset, offset + size) of one stream of a run's output, as a worker stored them (in
    batches, before publishing them: docs/live-runs.md). A stream's chunks are contiguous from 0."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+", db_index=False)  # (see Meta)
    stream = models.CharField(max_length=8, choices=STREAM_CHOICES)
    offset = models.BigIntegerField()
    size = models.IntegerField()
    data = models.BinaryField()
    # When it was stored, within milliseconds of being written: the run page's per-line times.
    created = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # Its index serves every read: "the chunk holding byte N, and the ones after it, up to M".
            models.UniqueConstraint(fields=["run", "stream", "offset"], name="output_chunk_unique_offset"),
            models.CheckConstraint(
                condition=models.Q(stream__in=[s.value for s in sandbox.Stream]), name="output_chunk_stream_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"run #{self.run_id} {self.stream} [{self.offset}, {self.offset + self.size})"


class MetricBatch(models.Model):
    """Metric samples of a run (the dicts of docs/live-runs.md), as many as one store batch held."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+", db_index=False)  # (see Meta)
    last_t = models.FloatField()  # `t` of its last sample: a reader that has samples until t skips the rest
    samples = models.JSONField()

    class Meta:
        indexes = [models.Index(fields=["run", "last_t"], name="metric_batch_run_t_idx")]

    def __str__(self) -> str:
        return f"run #{self.run_id} samples until {self.last_t}"


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
    # When a worker last claimed one of their runs: fair scheduling serves the longest unserved first.
    last_run_started_at = models.DateTimeField(null=True, blank=True)
    # Webhooks (evaluations/webhooks/): the default callback for their runs, and the key that signs
    # deliveries (shown once when made; kept, since every delivery is signed with it).
    webhook_url = models.CharField(max_length=2000, blank=True, default="")
    webhook_secret = models.CharField(max_length=100, blank=True, default="")

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

    # The verbose names are the admin's labels: words, with their unit.
    concurrent_runs = models.PositiveIntegerField("runs at once", null=True, blank=True)
    runs_per_day = models.PositiveIntegerField("runs per day", null=True, blank=True)
    cpu_seconds_per_day = models.FloatField(
        "CPU seconds per day",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0, "Must not be negative (0 lets no run start).")],
    )
    max_wall_seconds = models.FloatField(
        "longest wall time per run (s)",
        null=True,
        blank=True,
        validators=_sandbox_range("wall_seconds", what="wall time", unit="s"),
    )
    max_memory_mb = models.PositiveIntegerField(
        "most memory per run (MiB)",
        null=True,
        blank=True,
        validators=_sandbox_range("memory_bytes", what="memory", unit="MiB", scale=MiB),
    )
    max_output_bytes = models.PositiveBigIntegerField(
        "most output per stream (bytes)",
        null=True,
        blank=True,
        validators=_sandbox_range("stdout_bytes", what="output per stream", unit="bytes"),
    )
    max_upload_bytes = models.PositiveBigIntegerField(
        "largest upload (bytes)",
        null=True,
        blank=True,
        validators=[
            MinValueValidator(MIN_UPLOAD_BYTES, f"Must be at least {MIN_UPLOAD_BYTES} bytes: less holds no program.")
        ],
    )
    # Everything kept for the user at once: code and uploads, plus their runs' output until it expires.
    storage_bytes = models.PositiveBigIntegerField(
        "storage (bytes)",
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
        "storage_bytes",
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
        verbose_name = "API token"

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


class WebhookDelivery(models.Model):
    """One try to tell a run's callback URL that the run ended (evaluations/webhooks/delivery.py)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="webhook_deliveries")
    attempt = models.PositiveSmallIntegerField()
    url = models.CharField(max_length=2000)
    at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)  # NULL: no answer (see error)
    error = models.CharField(max_length=500, blank=True, default="")
    duration_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["run", "attempt"]
        # A redelivered task message finds its attempt taken and sends nothing twice.
        constraints = [models.UniqueConstraint(fields=["run", "attempt"], name="webhook_delivery_unique_attempt")]

    def __str__(self) -> str:
        return f"run #{self.run_id} webhook try {self.attempt}"

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def url_origin(self) -> str:
        return url_origin(self.url)


def url_origin(url: str) -> str:
    """A callback URL as others than its owner see it: a path or query may hold a token."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/…" if host else "…"
