"""API bodies of batches: the input serializers, and the output dicts with their schema shapes."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from evaluations.api.serializers import ArgvField, StrictCharField
from evaluations.batches.inputs import config_specs, input_specs, json_rows, rows_from_file
from evaluations.batches.selectors import RESULT_COLUMNS, BatchStats, result_row
from evaluations.batches.services import BatchSubmitInput
from evaluations.models import Batch, Run, RunReason, RunStatus, url_origin


class _AsSent(serializers.Field):
    """A JSON body's list as parsed, or a form's JSON text (parsed by the batch's own checks)."""

    def to_internal_value(self, data):
        return data


class BatchCreateInput(serializers.Serializer):
    """What the view checks with; the schema shows it per media type (BatchCode, BatchUpload)."""

    name = StrictCharField(required=False, allow_blank=True, trim_whitespace=True, max_length=200)
    code = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    file = serializers.FileField(required=False, allow_empty_file=True)
    entrypoint = StrictCharField(required=False, allow_blank=True, max_length=255)
    stdin = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    argv = ArgvField(required=False)
    inputs = _AsSent(required=False)
    inputs_file = serializers.FileField(required=False, allow_empty_file=True)
    configs = _AsSent(required=False)
    configs_file = serializers.FileField(required=False, allow_empty_file=True)
    callback_url = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="POSTed each run's JSON when it ends, signed (docs/webhooks.md); default: your profile's",
    )

    def validate(self, attrs):
        if ("code" in attrs) == ("file" in attrs):
            raise serializers.ValidationError({"code": "give exactly one of `code` (text) or `file` (an upload)"})
        for name in ("inputs", "configs"):
            if name in attrs and f"{name}_file" in attrs:
                raise serializers.ValidationError({name: f"give at most one of `{name}` and `{name}_file`"})
        return attrs

    def submit_input(self) -> BatchSubmitInput:
        """The checked values as the service takes them (raises Django's ValidationError for items)."""
        values = self.validated_data
        return BatchSubmitInput(
            name=values.get("name"),
            code=values.get("code"),
            file=values.get("file"),
            entrypoint=values.get("entrypoint"),
            stdin=values.get("stdin", ""),
            argv=values.get("argv") or [],
            inputs=input_specs(**_rows(values, "inputs")),
            configs=config_specs(**_rows(values, "configs")),
            callback_url=values.get("callback_url", ""),
        )


def _rows(values: dict, name: str) -> dict:
    """The items, the field they came from, and whether they are JSON-typed (a file's are text)."""
    upload = values.get(f"{name}_file")
    if upload is not None:
        field = f"{name}_file"
        return {
            "items": rows_from_file(upload.read(), name=upload.name or "", field=field),
            "field": field,
            "strict": False,
        }
    items = values.get(name, [])
    if isinstance(items, str):  # a form's field: JSON text
        items = json_rows(items, field=name)
    return {"items": items, "field": name, "strict": True}


@extend_schema_serializer(component_name="BatchInput")
class BatchInputItem(serializers.Serializer):
    """One input: the runs over it get this stdin (or a project file as stdin) and these arguments
    after the batch's own `argv`. An empty object runs the batch's `stdin` and `argv` as they are."""

    label = serializers.CharField(required=False, allow_blank=True, max_length=200, help_text="shown in results")
    stdin = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, help_text="instead of the batch's stdin"
    )
    stdin_file = serializers.CharField(
        required=False, allow_blank=True, help_text="a file of the project to read as stdin"
    )
    argv = ArgvField(required=False)


@extend_schema_serializer(component_name="BatchConfig")
class BatchConfigItem(serializers.Serializer):
    label = serializers.CharField(required=False, allow_blank=True, max_length=200)
    wall_seconds = serializers.FloatField(required=False)
    memory_mb = serializers.IntegerField(required=False)


_INPUTS_HELP = "one run per input and configuration; at most 1,000 runs in all (CRUCIBLE_MAX_BATCH_RUNS)"


@extend_schema_serializer(component_name="BatchCode")
class BatchCodeInput(BatchCreateInput):
    """A batch as JSON: the code as text (a file or project goes as multipart/form-data)."""

    code = serializers.CharField(trim_whitespace=False, help_text="the Python program, as UTF-8 text")
    file = None
    inputs = BatchInputItem(many=True, required=False, help_text=_INPUTS_HELP)
    inputs_file = None
    configs = BatchConfigItem(
        many=True, required=False, help_text="limits per configuration; default: one with the defaults"
    )
    configs_file = None


@extend_schema_serializer(component_name="BatchUpload")
class BatchUploadInput(BatchCreateInput):
    """A batch as multipart/form-data: the code or a file, and inputs and configs as JSON text or as
    an uploaded .csv (a header row naming the keys) or .json file."""

    code = serializers.CharField(required=False, trim_whitespace=False, help_text="the program as text, or:")
    file = serializers.FileField(required=False, help_text="a .py file, or a project archive with `entrypoint`")
    argv = serializers.CharField(required=False, help_text="arguments every run gets first, split like a shell would")
    inputs = serializers.CharField(required=False, help_text="a JSON list of BatchInput objects")
    inputs_file = serializers.FileField(required=False, help_text="a .csv or .json file of inputs")
    configs = serializers.CharField(required=False, help_text="a JSON list of BatchConfig objects")
    configs_file = serializers.FileField(required=False, help_text="a .csv or .json file of configurations")


def _asked_by_owner(request, batch: Batch) -> bool:
    # Callback URLs are shown whole to their owner only (a path or query may hold a token).
    return not batch.callback_url or getattr(request.user, "pk", None) == batch.owner_id


def batch_summary(batch: Batch, request, stats: BatchStats) -> dict:
    def absolute(name: str) -> str:
        return request.build_absolute_uri(reverse(name, args=[batch.pk]))

    return {
        "id": batch.pk,
        "url": absolute("batch-detail"),
        "api_url": absolute("api-batch-detail"),
        "name": batch.name,
        "owner": batch.owner.get_username(),
        "submission_id": batch.submission_id,
        "rerun_of": batch.rerun_of_id,
        "created": batch.created,
        "configs": batch.configs,
        "total": stats.total,
        "done": stats.done,
        "counts": stats.counts,
        "reasons": stats.reasons,
        "median_run_seconds": stats.median_run_seconds,
        "p95_run_seconds": stats.p95_run_seconds,
        "callback_url": batch.callback_url if _asked_by_owner(request, batch) else url_origin(batch.callback_url),
        "results_csv_url": absolute("api-batch-results-csv"),
        "results_json_url": absolute("api-batch-results-json"),
    }


def batch_output(batch: Batch, request, stats: BatchStats, runs: list[Run]) -> dict:
    body = batch_summary(batch, request, stats)
    body["runs"] = [
        {
            "id": run.pk,
            "api_url": request.build_absolute_uri(reverse("api-run-detail", args=[run.pk])),
            "input_index": run.batch_input.index if run.batch_input else None,
            "config_index": run.batch_config,
            "status": run.status,
            "reason": run.reason,
            "exit_code": run.exit_code,
        }
        for run in runs
    ]
    return body


def batch_results(batch: Batch, runs: list[Run]) -> list[dict]:
    return [result_row(run=run, batch=batch) for run in runs]


# Shapes for the schema.


@extend_schema_serializer(component_name="BatchConfigOut")
class BatchConfigOutput(serializers.Serializer):
    label = serializers.CharField(allow_blank=True)
    wall_seconds = serializers.FloatField()
    memory_mb = serializers.IntegerField()


def _counts(help_text: str) -> serializers.DictField:
    return serializers.DictField(child=serializers.IntegerField(), help_text=help_text)


@extend_schema_serializer(component_name="BatchSummary")
class BatchSummaryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField(help_text="the batch's page")
    api_url = serializers.URLField()
    name = serializers.CharField()
    owner = serializers.CharField()
    submission_id = serializers.IntegerField()
    rerun_of = serializers.IntegerField(allow_null=True, help_text="the batch whose failed runs this one re-runs")
    created = serializers.DateTimeField()
    configs = BatchConfigOutput(many=True)
    total = serializers.IntegerField(help_text="its runs")
    done = serializers.BooleanField(help_text="no run is queued or running")
    counts = _counts("runs by status (every status, 0 included)")
    reasons = _counts("ended runs by reason")
    median_run_seconds = serializers.FloatField(allow_null=True)
    p95_run_seconds = serializers.FloatField(allow_null=True)
    callback_url = serializers.CharField(allow_blank=True, help_text="told when each run ends; empty: none of its own")
    results_csv_url = serializers.URLField()
    results_json_url = serializers.URLField()


@extend_schema_serializer(component_name="BatchRun")
class BatchRunOutput(serializers.Serializer):
    id = serializers.IntegerField()
    api_url = serializers.URLField()
    input_index = serializers.IntegerField(allow_null=True)
    config_index = serializers.IntegerField(allow_null=True)
    status = serializers.ChoiceField(choices=RunStatus.choices)
    reason = serializers.ChoiceField(choices=RunReason.choices, allow_null=True)
    exit_code = serializers.IntegerField(allow_null=True)


@extend_schema_serializer(component_name="Batch")
class BatchOutput(BatchSummaryOutput):
    runs = BatchRunOutput(many=True)


@extend_schema_serializer(component_name="BatchList")
class BatchListOutput(serializers.Serializer):
    results = BatchSummaryOutput(many=True)


@extend_schema_serializer(component_name="BatchResult")
class BatchResultOutput(serializers.Serializer):
    run_id = serializers.IntegerField()
    input_index = serializers.IntegerField(allow_null=True)
    input_label = serializers.CharField(allow_blank=True)
    input_argv = serializers.CharField(allow_blank=True, help_text="the input's own arguments, shell-quoted")
    input_stdin_file = serializers.CharField(allow_blank=True)
    config_index = serializers.IntegerField(allow_null=True)
    config_label = serializers.CharField(allow_blank=True)
    wall_seconds = serializers.FloatField(allow_null=True)
    memory_mb = serializers.IntegerField(allow_null=True)
    status = serializers.ChoiceField(choices=RunStatus.choices)
    reason = serializers.ChoiceField(choices=RunReason.choices, allow_null=True)
    exit_code = serializers.IntegerField(allow_null=True)
    run_seconds = serializers.FloatField(allow_null=True)
    peak_memory_bytes = serializers.IntegerField(allow_null=True)
    output_bytes = serializers.IntegerField(help_text="stdout and stderr bytes written")


assert tuple(BatchResultOutput().fields) == RESULT_COLUMNS
