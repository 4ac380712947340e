"""Run pages: the list, a run, submitting, cancelling, re-running and sharing; thin views over
selectors and services."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

import sandbox
from evaluations.accounts import quotas
from evaluations.accounts.audit import client_ip
from evaluations.accounts.permissions import allowed, require
from evaluations.accounts.selectors import user_team
from evaluations.runs import selectors, services
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
    runs = selectors.run_list_visible_summaries(user=request.user)[:200]
    any_active = any(not run.is_terminal for run in runs)
    return render(request, "evaluations/run_list.html", {"runs": runs, "any_active": any_active})


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
        "cpu_cores": sandbox.Limits.cpu_cores,
    }
    page["can_cancel"] = allowed(request.user, "evaluations.cancel_run", run)
    page["can_rerun"] = allowed(request.user, "evaluations.rerun_run", run)
    sharing = {
        "can_change": allowed(request.user, "evaluations.share_submission", run),
        "mine": run.submission.owner_id == request.user.pk,
        "team": user_team(user=run.submission.owner),
    }
    return render(request, "evaluations/run_detail.html", {"run": run, "page": page, "sharing": sharing})


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
    if shared:
        messages.success(request, f"Shared with your team{f' ({team.name})' if team else ''}: they can read its runs.")
    else:
        messages.success(request, "No longer shared: only you (and reviewers and admins) can see its runs.")
    # Back to the run page the form was on, if it is a run of this submission.
    back = id_from_form(request.POST.get("run", ""))
    if back is not None and run.submission.runs.filter(pk=back).exists():
        return redirect("run-detail", run_id=back)
    return redirect("run-detail", run_id=run.pk)


@login_required
@require_POST
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
    return render(request, "evaluations/submission_new.html", {"form": form}, status=status)


def bad_request(request, exception=None):
    # Most often a form body over the upload limit, rejected before any view could say so.
    from evaluations.api.errors import body_too_large_message

    context = {
        "title": "Bad request",
        "message": f"The request was rejected. If you pasted code, note that {body_too_large_message()}.",
    }
    return render(request, "error.html", context, status=400)
