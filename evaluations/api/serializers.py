"""API bodies: small input serializers that check types, and the output dicts of runs and submissions."""

from __future__ import annotations

import base64

from django.conf import settings
from django.urls import reverse
from rest_framework import serializers

from evaluations.api.pagination import RUN_PAGE_SIZE_MAX
from evaluations.models import Run, Submission
from evaluations.runs import logstore, selectors
from evaluations.runs.uploads import argv_from_text
from evaluations.runs.validation import MIN_MEMORY_MB, MIN_WALL_SECONDS
from sandbox.contract import MiB


class StrictFloatField(serializers.FloatField):
    """A FloatField that does not take `true` for 1."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class ArgvField(serializers.Field):
    """A list of strings, or one line that is split like a POSIX shell would (no expansion)."""

    default_error_messages = {"invalid": "must be a list of strings or one line of shell-quoted arguments"}

    def to_internal_value(self, data):
        if isinstance(data, str):
            return argv_from_text(data)
        if isinstance(data, list) and all(isinstance(a, str) for a in data):
            return data
        self.fail("invalid")

    def to_representation(self, value):
        return value


class SubmissionCreateInput(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, trim_whitespace=True, max_length=200)
    code = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    file = serializers.FileField(required=False, allow_empty_file=True)
    wall_seconds = StrictFloatField(required=False)
    memory_mb = serializers.IntegerField(required=False)
    entrypoint = serializers.CharField(required=False, allow_blank=True, max_length=255)
    stdin = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    argv = ArgvField(required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Type errors name the allowed range too, not only "a valid number is required".
        wall = f"must be a number of seconds between {MIN_WALL_SECONDS:g} and {settings.CRUCIBLE_MAX_WALL_SECONDS:g}"
        memory = f"must be a whole number of MiB between {MIN_MEMORY_MB} and {settings.CRUCIBLE_MAX_MEMORY_MB}"
        for key in ("invalid", "max_string_length"):
            self.fields["wall_seconds"].error_messages[key] = wall
            self.fields["memory_mb"].error_messages[key] = memory

    def validate(self, attrs):
        has_code, has_file = "code" in attrs, "file" in attrs
        if has_code == has_file:
            raise serializers.ValidationError({"code": "give exactly one of `code` (text) or `file` (a .py upload)"})
        return attrs


def output_text(data: bytes | memoryview) -> str:
    """Program output as JSON text: UTF-8 with U+FFFD for invalid bytes (exact bytes are in *_base64)."""
    return bytes(data).decode("utf-8", errors="replace")


def run_summary(run: Run, request) -> dict:
    """A run as lists show it: its status, limits, usage and byte counts, never its output or code
    (the detail has those; a page of outputs would be up to 2 x 1 MiB, twice over, per run)."""

    def absolute(name: str) -> str:
        return request.build_absolute_uri(reverse(name, args=[run.pk]))

    return {
        "id": run.pk,
        "url": absolute("run-detail"),
        "api_url": absolute("api-run-detail"),
        "submission": {
            "id": run.submission_id,
            "name": run.submission.name,
            "owner": run.submission.owner.get_username(),
            "shared_with_team": run.submission.shared_with_team,
        },
        "status": run.status,
        "reason": run.reason,
        "detail": run.detail,
        "exit_code": run.exit_code,
        "limits": {"wall_seconds": run.wall_seconds, "memory_mb": run.memory_bytes // MiB},
        "usage": {
            "cpu_seconds": run.cpu_seconds,
            "peak_memory_bytes": run.peak_memory_bytes,
            "peak_processes": run.peak_processes,
        },
        "queued_at": run.queued_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "queue_seconds": run.queue_seconds,
        "run_seconds": run.run_seconds,
        "stdout_bytes": run.stdout_bytes,
        "stderr_bytes": run.stderr_bytes,
        "stdout_truncated": run.stdout_truncated,
        "stderr_truncated": run.stderr_truncated,
    }


def run_output(run: Run, request) -> dict:
    """A run in full: its summary, the submission's details, its queue position and its output."""

    def absolute(name: str) -> str:
        return request.build_absolute_uri(reverse(name, args=[run.pk]))

    body = run_summary(run, request)
    body["submission"].update(
        {
            "created": run.submission.created,
            "entrypoint": run.submission.entrypoint,
            "archive_name": run.submission.archive_name,
            "argv": run.submission.argv,
            "stdin_bytes": len(run.submission.stdin.encode("utf-8")),
        }
    )
    stdout, stderr = logstore.log_read(run, "stdout"), logstore.log_read(run, "stderr")
    body.update(
        {
            "logs_url": absolute("api-run-logs"),
            "metrics_url": absolute("api-run-metrics"),
            "websocket_path": f"/ws/runs/{run.pk}/",
            "queue_position": selectors.run_queue_position(run=run),
            "waiting": selectors.run_waiting(run=run),  # e.g. "no worker is available (...)"
            "stdout": output_text(stdout),
            "stderr": output_text(stderr),
            "stdout_base64": base64.b64encode(stdout).decode(),
            "stderr_base64": base64.b64encode(stderr).decode(),
            "engine": run.engine,
            "runtime_version": run.runtime_version,
            "image_digest": run.image_digest,
        }
    )
    return body


class StrictBooleanField(serializers.BooleanField):
    """true or false (JSON booleans, or those words in a form), not "yes", 1 or "on"."""

    default_error_messages = {"invalid": "must be true or false"}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        if data in ("true", "false"):
            return data == "true"
        self.fail("invalid")


class SubmissionShareInput(serializers.Serializer):
    shared_with_team = StrictBooleanField()


def submission_output(submission: Submission, request) -> dict:
    return {
        "id": submission.pk,
        "name": submission.name,
        "owner": submission.owner.get_username(),
        "created": submission.created,
        "shared_with_team": submission.shared_with_team,
        "runs_url": request.build_absolute_uri(reverse("api-submission-rerun", args=[submission.pk])),
    }


class RerunInput(serializers.Serializer):
    wall_seconds = StrictFloatField(required=False)
    memory_mb = serializers.IntegerField(required=False)


_PAGE_SIZE_RANGE = f"must be a whole number between 1 and {RUN_PAGE_SIZE_MAX}"


class RunListQuery(serializers.Serializer):
    """GET /api/v1/runs/: the cursor of the page (from `next`/`previous`), and how many runs a page holds."""

    cursor = serializers.CharField(required=False, max_length=1000)
    page_size = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=RUN_PAGE_SIZE_MAX,
        error_messages={key: _PAGE_SIZE_RANGE for key in ("invalid", "min_value", "max_value", "max_string_length")},
    )


class LogsQuery(serializers.Serializer):
    stream = serializers.ChoiceField(choices=["stdout", "stderr"])
    offset = serializers.IntegerField(min_value=0, default=0)
    limit = serializers.IntegerField(min_value=1, max_value=64 * MiB, required=False)
    download = serializers.BooleanField(default=False)
