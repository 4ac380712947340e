"""Batch pages: the list, a batch's live grid, submitting one, cancelling it and re-running its
failed runs; thin views over selectors and services."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from evaluations.accounts import quotas
from evaluations.accounts.audit import client_ip
from evaluations.accounts.permissions import allowed, require
from evaluations.api.throttling import rate_limited
from evaluations.batches import selectors, services
from evaluations.batches.forms import BatchForm
from evaluations.batches.inputs import config_specs, input_specs, rows_from_file


@login_required
def batch_list(request):
    batches = selectors.batch_list_visible(user=request.user)[:100]
    return render(request, "evaluations/batch_list.html", {"batches": batches})


@login_required
def batch_detail(request, batch_id: int):
    batch = selectors.batch_get_visible(user=request.user, batch_id=batch_id)
    runs = list(selectors.batch_runs(batch=batch))
    context = {
        "batch": batch,
        "runs": runs,
        "stats": selectors.batch_stats(runs=runs),
        "can_cancel": allowed(request.user, "evaluations.cancel_run", batch),
        "can_rerun": allowed(request.user, "evaluations.rerun_run", batch),
        "server_time": timezone.now(),
    }
    return render(request, "evaluations/batch_detail.html", context)


def _file_rows(upload, field: str) -> list:
    return rows_from_file(upload.read(), name=upload.name or "", field=field) if upload else []


def _specs(values: dict, name: str, parse) -> list:
    field = f"{name}_file"
    return parse(_file_rows(values.get(field), field), field=field, strict=False)


@login_required
@rate_limited
def batch_new(request):
    require(request.user, "evaluations.submit")
    form = BatchForm(request.POST or None, request.FILES or None)
    over_quota = False
    if request.method == "POST" and form.is_valid():
        values = form.cleaned_data
        try:
            data = services.BatchSubmitInput(
                name=values.get("name"),
                code=None if values.get("file") else values.get("code", ""),
                file=values.get("file"),
                entrypoint=values.get("entrypoint"),
                argv=values.get("argv") or [],
                inputs=_specs(values, "inputs", input_specs),
                configs=_specs(values, "configs", config_specs),
                callback_url=values.get("callback_url", "").strip(),
            )
            batch = services.batch_submit(owner=request.user, data=data, ip=client_ip(request))
        except ValidationError as exc:
            for field, problems in exc.message_dict.items():
                if field in form.fields:
                    form.add_error(field, problems)
                else:  # an item of the inputs or configs, e.g. inputs[3].argv
                    form.add_error(None, [f"{field}: {problem}" for problem in problems])
        except quotas.QuotaExceeded as exc:
            over_quota = True
            form.add_error(None, exc.message)
        else:
            return redirect("batch-detail", batch_id=batch.pk)
    status = 429 if over_quota else (400 if request.method == "POST" else 200)
    return render(request, "evaluations/batch_new.html", {"form": form}, status=status)


@login_required
@require_POST
@rate_limited
def batch_cancel_view(request, batch_id: int):
    batch = selectors.batch_get_visible(user=request.user, batch_id=batch_id)
    require(request.user, "evaluations.cancel_run", batch)
    touched = services.batch_cancel(batch=batch, actor=request.user, ip=client_ip(request))
    messages.info(request, f"Cancelled: {touched} runs were queued or running." if touched else "Nothing to cancel.")
    return redirect("batch-detail", batch_id=batch.pk)


@login_required
@require_POST
@rate_limited
def batch_rerun_view(request, batch_id: int):
    batch = selectors.batch_get_visible(user=request.user, batch_id=batch_id)
    require(request.user, "evaluations.rerun_run", batch)
    try:
        again = services.batch_rerun_failed(batch=batch, ip=client_ip(request))
    except services.NothingToRerun:
        messages.info(request, "No run of this batch failed: nothing to run again.")
        return redirect("batch-detail", batch_id=batch.pk)
    except quotas.QuotaExceeded as exc:
        messages.error(request, f"Not re-run: {exc.message}")
        return redirect("batch-detail", batch_id=batch.pk)
    except ValidationError as exc:
        messages.error(request, f"Not re-run: {'; '.join(exc.messages)}")
        return redirect("batch-detail", batch_id=batch.pk)
    return redirect("batch-detail", batch_id=again.pk)
