"""API bodies: small input serializers that check types, and the output dicts of runs and submissions."""

from __future__ import annotations

import base64

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.utils import html

from evaluations.api.pagination import RUN_PAGE_SIZE, RUN_PAGE_SIZE_MAX
from evaluations.models import Run, RunReason, RunStatus, Submission
from evaluations.runs import logstore, selectors
from evaluations.runs.uploads import argv_from_text
from evaluations.runs.validation import MIN_MEMORY_MB, MIN_WALL_SECONDS
from evaluations.webhooks.selectors import webhook_deliveries
from sandbox.contract import MiB


class _JsonTyped:
    """A field that takes from JSON only the JSON type the schema gives it (DRF would take the string
    "5" for a number, 5 for a string and `true` for 1); a form's values are all text, parsed as usual."""

    json_types: tuple[type, ...] = ()
    _in_form = False

    def get_value(self, dictionary):
        self._in_form = html.is_html_input(dictionary)
        return super().get_value(dictionary)

    def run_validation(self, data=empty):
        if not (self._in_form or data is empty or data is None):
            if isinstance(data, bool) != (bool in self.json_types) or not isinstance(data, self.json_types):
                self.fail("invalid")
        return super().run_validation(data)


class StrictFloatField(_JsonTyped, serializers.FloatField):
    json_types = (int, float)


class StrictIntegerField(_JsonTyped, serializers.IntegerField):
    json_types = (int, float)  # 128.0 is a whole number too


class StrictCharField(_JsonTyped, serializers.CharField):
    json_types = (str,)


class StrictBooleanField(_JsonTyped, serializers.BooleanField):
    """true or false (JSON booleans, or those words in a form), not "yes", 1 or "on"."""

    json_types = (bool,)
    default_error_messages = {"invalid": "must be true or false"}
    default_empty_html = empty  # missing from a form is missing (DRF's default takes it for an unticked box)

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        if data in ("true", "false"):
            return data == "true"
        self.fail("invalid")


@extend_schema_field(
    {
        "oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}],
        "description": "the program's arguments: a list, or one line split like a POSIX shell would",
        "example": ["--epochs", "3"],
    }
)
class ArgvField(serializers.Field):
    """A list of strings, or one line that is split like a POSIX shell would (no expansion)."""

    default_error_messages = {"invalid": "must be a list of strings or one line of shell-quoted arguments"}

    def to_internal_value(self, data):
        if isinstance(data, str):
            try:
                return argv_from_text(data)
            except DjangoValidationError as exc:
                raise serializers.ValidationError(exc.messages) from None  # not nested under "argv" twice
        if isinstance(data, list) and all(isinstance(a, str) for a in data):
            return data
        self.fail("invalid")

    def to_representation(self, value):
        return value


class SubmissionCreateInput(serializers.Serializer):
    name = StrictCharField(required=False, allow_blank=True, trim_whitespace=True, max_length=200)
    code = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    file = serializers.FileField(required=False, allow_empty_file=True)
    wall_seconds = StrictFloatField(required=False)
    memory_mb = StrictIntegerField(required=False)
    entrypoint = StrictCharField(required=False, allow_blank=True, max_length=255)
    stdin = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    argv = ArgvField(required=False)
    preload = StrictBooleanField(
        required=False,
        help_text=(
            "true: the program may start in a python3 that has imported common modules already (faster; "
            "more memory, more per fork; docs/sandbox.md lists them); false (the default): a fresh one"
        ),
    )
    callback_url = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="POSTed the run's JSON when it ends, signed (docs/webhooks.md); default: your profile's",
    )
    wait = StrictBooleanField(
        required=False,
        help_text=(
            "true: when your concurrent-run quota is reached, the run waits in your queue instead of "
            "being refused with 429 (the default, so a script notices it is over its quota)"
        ),
    )

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


# SubmissionCreateInput as the schema tells each media type (the view checks with it alone).


@extend_schema_serializer(component_name="SubmissionCode")
class SubmissionCodeInput(SubmissionCreateInput):
    """A submission as JSON: the code as text (a file goes as multipart/form-data)."""

    code = serializers.CharField(trim_whitespace=False, help_text="the Python program, as UTF-8 text")
    file = None


@extend_schema_serializer(component_name="SubmissionUpload")
class SubmissionUploadInput(SubmissionCreateInput):
    """A submission as multipart/form-data: exactly one of `code` and `file`."""

    code = serializers.CharField(required=False, trim_whitespace=False, help_text="the program as text, or:")
    file = serializers.FileField(
        required=False,
        help_text="a .py file, or a project archive (.zip, .tar, .tar.gz) with `entrypoint` naming its main file",
    )
    argv = serializers.CharField(required=False, help_text="the program's arguments, split like a POSIX shell would")


def output_text(data: bytes | memoryview) -> str:
    """Program output as JSON text: UTF-8 with U+FFFD for invalid bytes (exact bytes are in *_base64)."""
    return bytes(data).decode("utf-8", errors="replace")


class RunUrls:
    """A run's page and API URLs for one request, reversed once for a whole page of runs: both
    patterns end in the run's id."""

    def __init__(self, request) -> None:
        self.page, self.api = (
            request.build_absolute_uri(reverse(name, args=[0])).removesuffix("0/")
            for name in ("run-detail", "api-run-detail")
        )

    def of(self, run_id: int) -> tuple[str, str]:
        return f"{self.page}{run_id}/", f"{self.api}{run_id}/"


def run_summary(run: Run, request, urls: RunUrls | None = None) -> dict:
    """A run as lists show it: its status, limits, usage and byte counts, never its output or code
    (the detail has those; a page of outputs would be up to 2 x 1 MiB, twice over, per run).
    A list passes `urls` made once for all its runs."""
    page_url, api_url = (urls or RunUrls(request)).of(run.pk)
    return {
        "id": run.pk,
        "url": page_url,
        "api_url": api_url,
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
        # Set once retention deleted the run's output and samples (the rest of the run is kept).
        "output_expired_at": run.output_expired_at,
    }


def _owner_asks(request, run: Run) -> bool:
    """Callback URLs are shown whole to their owner only (a path or query may hold a token)."""
    user = getattr(request, "user", None)
    return user is not None and user.pk == run.submission.owner_id


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
            "preload": run.submission.preload,
            "stdin_bytes": len(run.submission.stdin.encode("utf-8")),
        }
    )
    # Output exists only once a worker has claimed the run, webhook deliveries once it has ended.
    claimed = run.deliveries > 0 or run.status != RunStatus.QUEUED
    stdout = logstore.log_read(run, "stdout") if claimed else b""
    stderr = logstore.log_read(run, "stderr") if claimed else b""
    queue_position, waiting = selectors.run_queue_state(run=run)
    body.update(
        {
            "logs_url": absolute("api-run-logs"),
            "metrics_url": absolute("api-run-metrics"),
            "websocket_path": f"/ws/runs/{run.pk}/",
            "queue_position": queue_position,
            "waiting": waiting,  # e.g. "no worker is available (...)"
            "stdout": output_text(stdout),
            "stderr": output_text(stderr),
            "stdout_base64": base64.b64encode(stdout).decode(),
            "stderr_base64": base64.b64encode(stderr).decode(),
            "engine": run.engine,
            "runtime_version": run.runtime_version,
            "image_digest": run.image_digest,
            "batch_id": run.batch_id,
            "webhook_deliveries": [
                {
                    "attempt": d.attempt,
                    "url": d.url if _owner_asks(request, run) else d.url_origin,
                    "at": d.at,
                    "status_code": d.status_code,
                    "error": d.error,
                    "duration_seconds": d.duration_seconds,
                    "delivered": d.delivered,
                }
                for d in (webhook_deliveries(run=run) if run.is_terminal else [])
            ],
        }
    )
    return body


# The shapes of the output dicts above, for the schema (responses conform to it: see
# tests/evaluations/api/test_api_conforms_to_its_schema.py).


@extend_schema_serializer(component_name="SubmissionSummary")
class SubmissionSummaryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    owner = serializers.CharField(help_text="the owner's username")
    shared_with_team = serializers.BooleanField()


@extend_schema_serializer(component_name="SubmissionOfRun")
class SubmissionOfRunOutput(SubmissionSummaryOutput):
    created = serializers.DateTimeField()
    entrypoint = serializers.CharField(help_text="the file run in a project archive")
    archive_name = serializers.CharField(help_text="the uploaded archive's name; empty for code sent as text")
    argv = serializers.ListField(child=serializers.CharField())
    preload = serializers.BooleanField(help_text="true: runs may start with common modules imported (docs/sandbox.md)")
    stdin_bytes = serializers.IntegerField()


@extend_schema_serializer(component_name="RunLimits")
class RunLimitsOutput(serializers.Serializer):
    wall_seconds = serializers.FloatField()
    memory_mb = serializers.IntegerField()


@extend_schema_serializer(component_name="RunUsage")
class RunUsageOutput(serializers.Serializer):
    cpu_seconds = serializers.FloatField(allow_null=True)
    peak_memory_bytes = serializers.IntegerField(allow_null=True)
    peak_processes = serializers.IntegerField(allow_null=True, help_text="processes and threads at once, sampled")


@extend_schema_serializer(component_name="RunSummary")
class RunSummaryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField(help_text="the run's page")
    api_url = serializers.URLField()
    submission = SubmissionSummaryOutput()
    status = serializers.ChoiceField(choices=RunStatus.choices)
    reason = serializers.ChoiceField(choices=RunReason.choices, allow_null=True, help_text="set on terminal runs")
    detail = serializers.CharField(allow_blank=True)
    exit_code = serializers.IntegerField(allow_null=True)
    limits = RunLimitsOutput()
    usage = RunUsageOutput()
    queued_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    queue_seconds = serializers.FloatField(allow_null=True)
    run_seconds = serializers.FloatField(allow_null=True)
    stdout_bytes = serializers.IntegerField(help_text="written by the program; more than is kept when truncated")
    stderr_bytes = serializers.IntegerField()
    stdout_truncated = serializers.BooleanField()
    stderr_truncated = serializers.BooleanField()
    output_expired_at = serializers.DateTimeField(
        allow_null=True, help_text="when retention deleted the output and samples; null while they are kept"
    )


@extend_schema_serializer(component_name="WebhookDelivery")
class WebhookDeliveryOutput(serializers.Serializer):
    attempt = serializers.IntegerField()
    url = serializers.CharField(help_text="whole for its owner; scheme and host for others")
    at = serializers.DateTimeField()
    status_code = serializers.IntegerField(allow_null=True, help_text="null: no answer (see error)")
    error = serializers.CharField(allow_blank=True)
    duration_seconds = serializers.FloatField(allow_null=True)
    delivered = serializers.BooleanField(help_text="answered 2xx")


@extend_schema_serializer(component_name="Run")
class RunOutput(RunSummaryOutput):
    submission = SubmissionOfRunOutput()
    logs_url = serializers.URLField()
    metrics_url = serializers.URLField()
    websocket_path = serializers.CharField(help_text="live output and status: docs/live-runs.md")
    queue_position = serializers.IntegerField(allow_null=True, help_text="queued runs ahead of this one")
    waiting = serializers.CharField(allow_null=True, help_text="why a queued run waits beyond its turn")
    stdout = serializers.CharField(allow_blank=True, help_text="UTF-8, invalid bytes replaced with U+FFFD")
    stderr = serializers.CharField(allow_blank=True)
    stdout_base64 = serializers.CharField(allow_blank=True, help_text="the exact bytes")
    stderr_base64 = serializers.CharField(allow_blank=True)
    engine = serializers.CharField(allow_blank=True)
    runtime_version = serializers.CharField(allow_blank=True)
    image_digest = serializers.CharField(allow_blank=True)
    batch_id = serializers.IntegerField(allow_null=True, help_text="the batch it is a run of, if any")
    webhook_deliveries = WebhookDeliveryOutput(many=True, help_text="tries to tell its callback URL it ended")


@extend_schema_serializer(component_name="Submission")
class SubmissionOutput(SubmissionSummaryOutput):
    created = serializers.DateTimeField()
    runs_url = serializers.URLField(help_text="POST here to run it again")


@extend_schema_serializer(component_name="MetricSample")
class MetricSampleOutput(serializers.Serializer):
    t = serializers.FloatField(help_text="seconds since the run started")
    cpu_seconds = serializers.FloatField(allow_null=True)
    cpu_percent = serializers.FloatField(allow_null=True)
    memory_bytes = serializers.IntegerField(allow_null=True)
    processes = serializers.IntegerField(allow_null=True)


@extend_schema_serializer(component_name="RunMetrics")
class RunMetricsOutput(serializers.Serializer):
    samples = MetricSampleOutput(many=True)


@extend_schema_serializer(component_name="SubmissionShare")
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


@extend_schema_serializer(component_name="Rerun")
class RerunInput(serializers.Serializer):
    """Limits for the new run; the previous run's when left out."""

    wall_seconds = StrictFloatField(required=False)
    memory_mb = StrictIntegerField(required=False)


_PAGE_SIZE_RANGE = f"must be a whole number between 1 and {RUN_PAGE_SIZE_MAX}"


class RunListQuery(serializers.Serializer):
    """GET /api/v1/runs/: the cursor of the page (from `next`/`previous`), and how many runs a page holds."""

    cursor = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=1000,
        help_text="where the page starts: take it from a page's `next` or `previous` URL",
    )
    page_size = serializers.IntegerField(
        required=False,
        help_text=f"runs per page (default {RUN_PAGE_SIZE})",
        min_value=1,
        max_value=RUN_PAGE_SIZE_MAX,
        error_messages={key: _PAGE_SIZE_RANGE for key in ("invalid", "min_value", "max_value", "max_string_length")},
    )


# Far beyond any stream, and with `limit` added still inside the database's 64-bit integers.
MAX_LOG_OFFSET = 2**62


class LogsQuery(serializers.Serializer):
    stream = serializers.ChoiceField(choices=["stdout", "stderr"])
    offset = serializers.IntegerField(min_value=0, max_value=MAX_LOG_OFFSET, default=0)
    limit = serializers.IntegerField(min_value=1, max_value=64 * MiB, required=False)
    download = serializers.BooleanField(default=False)
