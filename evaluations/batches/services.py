"""Writes on batches: submitting one (a submission run over inputs × configurations), cancelling it,
and running its failed runs again. A batch is checked and counted against the daily quotas whole:
it is made entirely or not at all. Its runs wait in their owner's queue; the scheduler starts no
more of them at once than the owner's concurrent-run quota (evaluations/runs/scheduling.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

import sandbox
from evaluations.accounts import audit
from evaluations.accounts.quotas import owner_lock, quota_check_new_runs, quotas_for, upload_size
from evaluations.batches.inputs import ConfigSpec, InputSpec
from evaluations.models import Batch, BatchInput, Run, RunStatus, Submission
from evaluations.runs import lifecycle, scheduling
from evaluations.runs.services import source_check
from evaluations.runs.uploads import read_upload
from evaluations.runs.validation import limits_build, run_inputs_validate, submission_name_clean
from evaluations.webhooks.services import callback_ready, callback_url_clean
from sandbox.contract import MiB

FAILED_STATUSES = (RunStatus.FAILED, RunStatus.ERROR)


@dataclass(frozen=True)
class BatchSubmitInput:
    """What a user submits for a batch through the browser form or the API, not yet checked."""

    name: str | None = None
    code: str | None = None
    file: object = None  # an uploaded .py file or project archive
    entrypoint: str | None = None
    stdin: str = ""
    argv: list[str] = field(default_factory=list)
    inputs: list[InputSpec] = field(default_factory=list)
    configs: list[ConfigSpec] = field(default_factory=list)
    callback_url: str = ""  # told when each of its runs ends (evaluations/webhooks/)


def batch_submit(*, owner, data: BatchSubmitInput, ip: str | None = None) -> Batch:
    """The form's and the API's entry point: read the upload, check everything, make the batch."""
    source = read_upload(data.file, field="file") if data.file else None
    name = submission_name_clean(data.name)
    argv = list(data.argv)
    run_inputs_validate(stdin=data.stdin, argv=argv)
    callback_url = callback_url_clean(data.callback_url)
    callback_ready(owner=owner, url=callback_url)
    quotas = quotas_for(owner)
    checked = source_check(
        code=source.code if source else data.code,
        archive=source.archive if source else None,
        archive_name=source.archive_name if source else "",
        entrypoint=data.entrypoint,
        quotas=quotas,
    )
    inputs = list(data.inputs) or [InputSpec()]
    configs = list(data.configs) or [ConfigSpec()]
    count = len(inputs) * len(configs)
    if count > settings.CRUCIBLE_MAX_BATCH_RUNS:
        raise ValidationError(
            {
                "inputs": f"{len(inputs)} inputs × {len(configs)} configurations make {count} runs; "
                f"a batch has at most {settings.CRUCIBLE_MAX_BATCH_RUNS}: split it into several batches"
            }
        )
    for i, spec in enumerate(inputs):
        _input_check(spec, where=f"inputs[{i}]", base_argv=argv, files=checked.files)
    limits = []
    for i, config in enumerate(configs):
        try:
            limits.append(limits_build(wall_seconds=config.wall_seconds, memory_mb=config.memory_mb, quotas=quotas))
        except ValidationError as exc:
            raise ValidationError({f"configs[{i}].{k}": v for k, v in exc.message_dict.items()}) from None
    inputs_bytes = sum(len(spec.stdin.encode("utf-8")) for spec in inputs if spec.stdin is not None)
    archive = source.archive if source else None
    with transaction.atomic():
        owner_lock(owner)
        quota_check_new_runs(
            user=owner,
            quotas=quotas,
            wall_seconds=[limit.wall_seconds for limit in limits] * len(inputs),
            upload_bytes=upload_size(code=checked.code, stdin=data.stdin, archive=archive) + inputs_bytes,
            wait=True,
        )
        free = scheduling.free_slots(owner=owner, limit=quotas.concurrent_runs)
        submission = Submission.objects.create(
            owner=owner,
            name=name,
            code=checked.code,
            archive=archive,
            archive_name=source.archive_name if archive is not None else "",
            entrypoint=checked.entrypoint,
            stdin=data.stdin,
            argv=argv,
        )
        batch = Batch.objects.create(
            owner=owner,
            submission=submission,
            name=name,
            configs=[_config_row(config, limit) for config, limit in zip(configs, limits, strict=True)],
            inputs_bytes=inputs_bytes,
            callback_url=callback_url,
        )
        rows = BatchInput.objects.bulk_create(
            BatchInput(
                batch=batch,
                index=i,
                label=spec.label,
                stdin=spec.stdin,
                stdin_file=spec.stdin_file,
                argv=list(spec.argv),
            )
            for i, spec in enumerate(inputs)
        )
        pairs = [(row, c) for row in rows for c in range(len(limits))]
        _runs_create(batch=batch, pairs=pairs, limits=limits, free=free, ip=ip, rerun_of=None)
    return batch


def _input_check(spec: InputSpec, *, where: str, base_argv: list[str], files: dict[str, bytes] | None) -> None:
    try:
        run_inputs_validate(stdin=spec.stdin or "", argv=[*base_argv, *spec.argv])
    except ValidationError as exc:
        raise ValidationError({f"{where}.{k}": v for k, v in exc.message_dict.items()}) from None
    if spec.stdin_file and (files is None or spec.stdin_file not in files):
        what = "the project has no such file" if files is not None else "only a project archive has files"
        raise ValidationError({f"{where}.stdin_file": f"{spec.stdin_file!r}: {what}"})


def _config_row(config: ConfigSpec, limits) -> dict:
    return {"label": config.label, "wall_seconds": limits.wall_seconds, "memory_mb": limits.memory_bytes // MiB}


def _runs_create(
    *,
    batch: Batch,
    pairs: list[tuple[BatchInput, int]],
    limits: list[sandbox.Limits],
    free: int | None,
    ip: str | None,
    rerun_of: Batch | None,
) -> list[Run]:
    """The batch's runs, one per (input, config index), in that order; messages for as many as may
    start now (`free`; None: all)."""
    configs = limits
    runs = Run.objects.bulk_create(
        Run(
            submission=batch.submission,
            batch=batch,
            batch_input=batch_input,
            batch_config=config,
            wall_seconds=configs[config].wall_seconds,
            memory_bytes=configs[config].memory_bytes,
            stdout_limit_bytes=configs[config].stdout_bytes,
            stderr_limit_bytes=configs[config].stderr_bytes,
        )
        for batch_input, config in pairs
    )
    # The others get a message when one of the owner's runs ends (lifecycle.slot_freed_on_commit).
    lifecycle.runs_send_on_commit([run.pk for run in runs][: len(runs) if free is None else free])
    # One status is enough for open run lists: a run they do not show makes them fetch the list again.
    if runs:
        lifecycle.publish_status_on_commit(runs[0].pk)
    audit.audit_record(
        actor=batch.owner,
        action=audit.BATCH_SUBMIT,
        target=f"batch:{batch.pk}",
        ip=ip,
        data={"runs": len(runs), "rerun_of": rerun_of.pk if rerun_of else None},
    )
    return runs


def batch_cancel(*, batch: Batch, actor=None, ip: str | None = None) -> int:
    """Cancel the batch's queued runs and ask its running ones to stop (they end within a second);
    how many it touched. One audit record for the batch, not one per run."""
    queued = list(batch.runs.filter(status=RunStatus.QUEUED).values_list("pk", flat=True))
    cancelled = lifecycle.runs_cancel_queued(run_ids=queued, detail="cancelled before it started, with its batch")
    stopping = batch.runs.filter(status=RunStatus.RUNNING, cancel_requested_at__isnull=True).update(
        cancel_requested_at=timezone.now()
    )
    touched = len(cancelled) + stopping
    target = f"batch:{batch.pk}"
    audit.audit_record(actor=actor, action=audit.BATCH_CANCEL, target=target, ip=ip, data={"runs": touched})
    return touched


class NothingToRerun(Exception):
    """The batch has no failed runs (yet)."""


def batch_rerun_failed(*, batch: Batch, ip: str | None = None) -> Batch:
    """A new batch of the same submission with the inputs and configurations whose runs failed or
    ended in error; checked against the owner's quotas like any batch."""
    failed = list(batch.runs.filter(status__in=FAILED_STATUSES).select_related("batch_input").order_by("id"))
    if not failed:
        raise NothingToRerun(f"batch {batch.pk} has no failed runs")
    owner = batch.owner
    quotas = quotas_for(owner)
    if batch.submission.archive_expired_at is not None:
        raise ValidationError({"batch": "its uploaded project was deleted (runs' files are kept for a limited time)"})
    limits = [
        limits_build(wall_seconds=c["wall_seconds"], memory_mb=c["memory_mb"], quotas=quotas) for c in batch.configs
    ]
    with transaction.atomic():
        owner_lock(owner)
        quota_check_new_runs(
            user=owner, quotas=quotas, wall_seconds=[limits[run.batch_config].wall_seconds for run in failed], wait=True
        )
        free = scheduling.free_slots(owner=owner, limit=quotas.concurrent_runs)
        again = Batch.objects.create(
            owner=owner,
            submission=batch.submission,
            name=batch.name,
            configs=batch.configs,
            rerun_of=batch,
            callback_url=batch.callback_url,
        )
        pairs = [(run.batch_input, run.batch_config) for run in failed]
        _runs_create(batch=again, pairs=pairs, limits=limits, free=free, ip=ip, rerun_of=batch)
    return again
