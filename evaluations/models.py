"""Submissions (the code) and runs (one execution of it, with its outcome and output)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

import sandbox

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

    # The output itself lives in the log store (evaluations/logstore.py), with byte offsets.
    stdout_bytes = models.BigIntegerField(default=0)  # written by the program, may exceed what is kept
    stderr_bytes = models.BigIntegerField(default=0)
    stdout_truncated = models.BooleanField(default=False)
    stderr_truncated = models.BooleanField(default=False)

    # Set by a cancel request; the worker running the sandbox watches it.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

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
