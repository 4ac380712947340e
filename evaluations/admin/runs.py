"""Runs, submissions and worker heartbeats in the admin: read-only, with "Cancel selected runs" and
pinning submissions (retention then keeps their output)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.urls import reverse
from django.utils.html import format_html

from evaluations.accounts import audit
from evaluations.accounts.permissions import allowed
from evaluations.admin.site import ReadOnlyAdmin
from evaluations.models import Run, Submission, WorkerHeartbeat
from evaluations.runs import selectors, services
from evaluations.runs.words import size_words

# Byte counts shown in KiB/MiB/GiB on a run's admin page, with their labels.
SIZED_FIELDS = {
    "memory_bytes": "memory limit",
    "stdout_limit_bytes": "stdout limit",
    "stderr_limit_bytes": "stderr limit",
    "peak_memory_bytes": "peak memory",
    "stdout_bytes": "stdout written",
    "stderr_bytes": "stderr written",
}
RUN_PAGE_FIELDS = ["live_page", *(f"{f.name}_size" if f.name in SIZED_FIELDS else f.name for f in Run._meta.fields)]


def _sized(name: str, label: str):
    @admin.display(description=label)
    def show(model_admin, run) -> str:
        value = getattr(run, name)
        return "–" if value is None else f"{size_words(value)} ({value} bytes)"

    return show


# Read-only: runs come from submissions and a run's fields are its record; cancelling is an action.
@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ("id", "owner", "submission_name", "status", "reason", "exit_code", "queued_at", "finished_at")
    list_filter = (
        ("submission__owner", admin.RelatedOnlyFieldListFilter),
        "status",
        "reason",
        "queued_at",
    )
    search_fields = ("=id", "submission__name", "submission__owner__username")
    date_hierarchy = "queued_at"
    list_select_related = ("submission", "submission__owner")
    fields = RUN_PAGE_FIELDS
    readonly_fields = RUN_PAGE_FIELDS
    actions = ["cancel_runs", "pin_submissions", "unpin_submissions"]

    @admin.display(description="live page")
    def live_page(self, run) -> str:
        return format_html(
            '<a href="{}">Run #{} as its owner sees it, live</a>', reverse("run-detail", args=[run.pk]), run.pk
        )

    def get_queryset(self, request):
        return selectors.runs_without_bulk(super().get_queryset(request))

    def has_cancel_permission(self, request) -> bool:
        return allowed(request.user, "evaluations.administer")

    @admin.display(description="owner", ordering="submission__owner__username")
    def owner(self, run) -> str:
        return run.submission.owner.get_username()

    @admin.display(description="name", ordering="submission__name")
    def submission_name(self, run) -> str:
        return run.submission.name

    @admin.action(description="Cancel selected runs", permissions=["cancel"])
    def cancel_runs(self, request, queryset) -> None:
        cancelled = ended = 0
        for run in queryset.select_related("submission"):
            if run.is_terminal:
                ended += 1
                continue
            try:
                services.run_cancel(run=run, actor=request.user, ip=audit.client_ip(request))
            except services.RunNotCancellable:
                ended += 1
            else:
                cancelled += 1
        text = f"Cancelled {cancelled} run{'s' if cancelled != 1 else ''} (running ones stop within a second)"
        if ended:
            text += f"; {ended} had already ended"
        self.message_user(request, text + ".", messages.SUCCESS)

    def has_pin_permission(self, request) -> bool:
        return allowed(request.user, "evaluations.administer")

    @admin.action(description="Pin their submissions (keep their output past retention)", permissions=["pin"])
    def pin_submissions(self, request, queryset) -> None:
        _set_pinned(self, request, Submission.objects.filter(runs__in=queryset).distinct(), pinned=True)

    @admin.action(description="Unpin their submissions", permissions=["pin"])
    def unpin_submissions(self, request, queryset) -> None:
        _set_pinned(self, request, Submission.objects.filter(runs__in=queryset).distinct(), pinned=False)


for _name, _label in SIZED_FIELDS.items():
    setattr(RunAdmin, f"{_name}_size", _sized(_name, _label))


# Read-only: sharing is the owner's choice, made on the run page; pinning is an action.
@admin.register(Submission)
class SubmissionAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "owner", "shared_with_team", "pinned", "created")
    list_filter = ("pinned", "shared_with_team", "created")
    search_fields = ("=id", "name", "owner__username")
    list_select_related = ("owner",)
    fields = (
        "owner",
        "name",
        "shared_with_team",
        "pinned",
        "entrypoint",
        "archive_name",
        "archive_expired_at",
        "argv",
        "stdin",
        "code",
        "created",
    )
    readonly_fields = fields
    actions = ["pin", "unpin"]

    def has_pin_permission(self, request) -> bool:
        return allowed(request.user, "evaluations.administer")

    @admin.action(description="Pin selected submissions (keep their output past retention)", permissions=["pin"])
    def pin(self, request, queryset) -> None:
        _set_pinned(self, request, queryset, pinned=True)

    @admin.action(description="Unpin selected submissions", permissions=["pin"])
    def unpin(self, request, queryset) -> None:
        _set_pinned(self, request, queryset, pinned=False)

    def get_changelist(self, request, **kwargs):
        return _SubmissionChangeList


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("hostname", "concurrency", "started", "last_seen")
    readonly_fields = ("hostname", "concurrency", "started", "last_seen")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # workers write these; deleting a departed worker's row is allowed


def _set_pinned(model_admin, request, submissions, *, pinned: bool) -> None:
    changed = 0
    for submission in submissions.only("pk", "pinned"):
        changed += services.submission_set_pinned(
            actor=request.user, submission=submission, pinned=pinned, request=request
        )
    verb = "Pinned" if pinned else "Unpinned"
    text = f"{verb} {changed} submission{'s' if changed != 1 else ''}"
    if pinned:
        text += ": retention keeps their runs' output and their upload (output already expired stays gone)"
    model_admin.message_user(request, text + ".", messages.SUCCESS)


class _SubmissionChangeList(ChangeList):
    # The list shows no code: leave the large columns out of its query (the change page loads them).
    def get_queryset(self, request, exclude_parameters=None):
        return super().get_queryset(request, exclude_parameters).defer(*selectors.SUBMISSION_BULK)
