"""Server-rendered pages: thin views over selectors and services."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render

from evaluations import selectors, services
from evaluations.forms import SubmissionForm
from evaluations.output import output_for_display
from evaluations.uploads import code_from_upload


@login_required
def run_list(request):
    runs = selectors.run_list_visible(user=request.user)[:200]
    any_active = any(not run.is_terminal for run in runs)
    return render(request, "evaluations/run_list.html", {"runs": runs, "any_active": any_active})


@login_required
def run_detail(request, run_id: int):
    run = selectors.run_get_visible(user=request.user, run_id=run_id)
    context = {
        "run": run,
        "stdout": output_for_display(run.stdout),
        "stderr": output_for_display(run.stderr),
    }
    return render(request, "evaluations/run_detail.html", context)


@login_required
def submission_new(request):
    form = SubmissionForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            code = code_from_upload(data["file"], field="file") if data.get("file") else data.get("code", "")
            run = services.submission_create(
                owner=request.user,
                name=data.get("name"),
                code=code,
                wall_seconds=data.get("wall_seconds"),
                memory_mb=data.get("memory_mb"),
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, messages)
        else:
            return redirect("run-detail", run_id=run.pk)
    return render(request, "evaluations/submission_new.html", {"form": form}, status=400 if form.errors else 200)


def bad_request(request, exception=None):
    # Most often a form body over the upload limit, rejected before any view could say so.
    from evaluations.api.errors import body_too_large_message

    context = {
        "title": "Bad request",
        "message": f"The request was rejected. If you pasted code, note that {body_too_large_message()}.",
    }
    return render(request, "error.html", context, status=400)
