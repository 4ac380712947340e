"""Run pages: the list, a run, submitting, cancelling, re-running and sharing; thin views over
selectors and services."""

from __future__ import annotations

from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

import sandbox
from evaluations.accounts import quotas
from evaluations.accounts.audit import client_ip
from evaluations.accounts.permissions import allowed, require
from evaluations.accounts.selectors import user_team
from evaluations.api.throttling import rate_limited
from evaluations.runs import combined_output, list_filters, selectors, services, story, words
from evaluations.runs.forms import SubmissionForm


def id_from_form(text: str) -> int | None:
    """A row id from a form field, or None. ASCII digits only: str.isdigit() also accepts "²",
    which int() refuses; and at most 18 of them, so int() neither meets Python's limit on digits
    nor makes a number too large for a bigint."""
    if text.isascii() and text.isdecimal() and len(text) <= 18:
        return int(text)
    return None


@login_required
def run_list(request):
    filters = list_filters.RunFilterForm(request.GET)
    runs = selectors.run_list_visible_summaries(user=request.user)
    valid = filters.is_valid()
    if valid:
        runs = list_filters.runs_filtered(runs, filters.cleaned_data)
    page = list_filters.runs_page(runs, request.GET.get("page"))
    others = request.GET.copy()
    others.pop("page", None)
    context = {
        "runs": page.object_list,
        "page": page,
        "filters": filters,
        "filtered": valid and any(filters.cleaned_data.values()),
        "query_without_page": others.urlencode(),
        "any_active": any(not run.is_terminal for run in page.object_list),
        "words": words.words_for_pages(),
    }
    return render(request, "evaluations/run_list.html", context, status=200 if valid else 400)


@login_required
def run_detail(request, run_id: int):
    run = selectors.run_get_visible(user=request.user, run_id=run_id)
    page = {
        "run_id": run.pk,
        "status": run.status,
        "terminal": run.is_terminal,
        "ws_path": f"/ws/runs/{run.pk}/",
        "logs_url": reverse("api-run-logs", args=[run.pk]),
        "metrics_url": reverse("api-run-metrics", args=[run.pk]),
        "api_url": reverse("api-run-detail", args=[run.pk]),
        "cancel_url": reverse("run-cancel", args=[run.pk]),
        "rerun_url": reverse("run-rerun", args=[run.pk]),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "server_time": timezone.now().isoformat(),
        "memory_limit_bytes": run.memory_bytes,
        # Before it ends a run has no engine yet: it will get the site's.
        "engine": run.engine or settings.CRUCIBLE_SANDBOX_ENGINE,
        "cpu_cores": sandbox.Limits.cpu_cores,
    }
    page["can_cancel"] = allowed(request.user, "evaluations.cancel_run", run)
    page["can_rerun"] = allowed(request.user, "evaluations.rerun_run", run)
    sharing = {
        "can_change": allowed(request.user, "evaluations.share_submission", run),
        "mine": run.submission.owner_id == request.user.pk,
        "team": user_team(user=run.submission.owner),
    }
    context = {
        "run": run,
        "page": page,
        "sharing": sharing,
        "retention_days": settings.CRUCIBLE_RETENTION_DAYS,
        "words": words.words_for_pages(),
        "inputs": story.run_inputs(run),
        "siblings": story.submission_runs(run),
    }
    return render(request, "evaluations/run_detail.html", context)


@login_required
@require_GET
def run_file(request, run_id: int, path: str):
    """One file of a run's uploaded project, shown as text (or downloaded with ?download=1)."""
    run = selectors.run_get_visible(user=request.user, run_id=run_id)
    files = story.project_file_list(run)
    if files is None or path not in files:
        raise Http404("no such file in this run's project")
    data = files[path]
    if request.GET.get("download") == "1":
        response = HttpResponse(data, content_type="application/octet-stream")
        response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}"
        return response
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    context = {"run": run, "path": path, "text": text, "size": len(data), "words": words.words_for_pages()}
    return render(request, "evaluations/run_file.html", context)


@login_required
@require_GET
def run_compare(request):
    """Two runs side by side: inputs, outcome, usage, and a diff of their output."""
    ids = [id_from_form(request.GET.get(key, "")) for key in ("a", "b")]
    if None in ids:
        message = "Compare needs two run numbers: /runs/compare/?a=<run>&b=<run>."
        return render(request, "error.html", {"title": "Bad request", "message": message}, status=400)
    a, b = (selectors.run_get_visible(user=request.user, run_id=run_id) for run_id in ids)
    context = {
        "a": a,
        "b": b,
        "inputs": (story.run_inputs(a), story.run_inputs(b)),
        "diff": story.output_diff(a, b),
        "same_code": a.submission.code == b.submission.code,
        "words": words.words_for_pages(),
    }
    return render(request, "evaluations/run_compare.html", context)


@login_required
@require_GET
def run_output_download(request, run_id: int):
    """stdout and stderr together, in the order they were written, as a text file."""
    run = selectors.run_get_visible(user=request.user, run_id=run_id)
    if run.output_expired_at:
        message = f"The output of run {run.pk} expired and was deleted on {run.output_expired_at:%Y-%m-%d}."
        return render(request, "error.html", {"title": "Output deleted", "message": message}, status=410)
    response = StreamingHttpResponse(combined_output.output_in_order(run), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-output.log"'
    return response


@login_required
@require_POST
def submission_share(request, submission_id: int):
    """The owner shares a submission's runs with their team (read-only), or stops sharing."""
    run = selectors.run_latest_of_submission(user=request.user, submission_id=submission_id)
    require(request.user, "evaluations.share_submission", run)
    choice = request.POST.get("shared_with_team")
    if choice not in ("true", "false"):
        message = "shared_with_team must be true or false"
        return render(request, "error.html", {"title": "Bad request", "message": message}, status=400)
    shared = choice == "true"
    services.submission_set_shared(actor=request.user, submission=run.submission, shared=shared, request=request)
    team = user_team(user=request.user)
    if shared and team is None:
        messages.info(
            request,
            "Not shared with anyone yet: you are in no team. Its runs become readable by your team "
            "once an admin puts you in one; until then only you (and reviewers and admins) can see them.",
        )
    elif shared:
        messages.success(request, f"Shared with your team ({team.name}): they can read its runs.")
    else:
        messages.success(request, "No longer shared: only you (and reviewers and admins) can see its runs.")
    # Back to the run page the form was on, if it is a run of this submission.
    back = id_from_form(request.POST.get("run", ""))
    if back is not None and run.submission.runs.filter(pk=back).exists():
        return redirect("run-detail", run_id=back)
    return redirect("run-detail", run_id=run.pk)


@login_required
@require_POST
@rate_limited
def run_cancel_view(request, run_id: int):
    run = selectors.run_get_visible(user=request.user, run_id=run_id)
    require(request.user, "evaluations.cancel_run", run)
    try:
        services.run_cancel(run=run, actor=request.user, ip=client_ip(request))
    except services.RunNotCancellable:
        messages.info(request, "The run had already ended.")
    return redirect("run-detail", run_id=run.pk)


@login_required
@require_POST
@rate_limited
def run_rerun_view(request, run_id: int):
    run = selectors.run_get_visible(user=request.user, run_id=run_id)
    require(request.user, "evaluations.rerun_run", run)
    try:
        new_run = services.run_rerun(run=run, actor=request.user, ip=client_ip(request))
    except quotas.QuotaExceeded as exc:
        messages.error(request, f"Not re-run: {exc.message}")
        return redirect("run-detail", run_id=run.pk)
    except ValidationError as exc:  # its limits or its code are above what the owner's quota now allows
        problems = "; ".join(f"{field} {' '.join(text)}" for field, text in exc.message_dict.items())
        messages.error(request, f"Not re-run: {problems}. Submit it again within the current limits.")
        return redirect("run-detail", run_id=run.pk)
    return redirect("run-detail", run_id=new_run.pk)


@login_required
@rate_limited  # its POSTs: a submission counts as one, as in the API
def submission_new(request):
    require(request.user, "evaluations.submit")
    ceilings = quotas.run_ceilings(quotas.quotas_for(request.user))
    form = SubmissionForm(request.POST or None, request.FILES or None, ceilings=ceilings)
    over_quota = False
    if request.method == "POST" and form.is_valid():
        try:
            run = services.submission_submit(
                owner=request.user, data=services.SubmissionInput.from_mapping(form.cleaned_data), ip=client_ip(request)
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, messages)
        except quotas.QuotaExceeded as exc:
            # 429 like the API: the input was fine, the user is over a quota.
            over_quota = True
            form.add_error(None, exc.message)
        else:
            return redirect("run-detail", run_id=run.pk)
    status = 429 if over_quota else 400 if form.errors else 200
    context = {"form": form, "file_was_chosen": bool(request.FILES.get("file"))}
    return render(request, "evaluations/submission_new.html", context, status=status)


def bad_request(request, exception=None):
    # Most often a form body over the upload limit, rejected before any view could say so.
    from evaluations.api.errors import body_too_large_message

    context = {
        "title": "Bad request",
        "message": f"The request was rejected. If you pasted code, note that {body_too_large_message()}.",
    }
    return render(request, "error.html", context, status=400)
