"""Runs, submissions and worker heartbeats in the admin: read-only, with "Cancel selected runs"."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList

from evaluations.accounts import audit
from evaluations.accounts.permissions import allowed
from evaluations.models import Run, Submission, WorkerHeartbeat
from evaluations.runs import selectors, services


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
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
    readonly_fields = [f.name for f in Run._meta.fields]
    actions = ["cancel_runs"]

    def get_queryset(self, request):
        return selectors.runs_without_bulk(super().get_queryset(request))

    def has_add_permission(self, request) -> bool:
        return False  # runs come from submissions

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a run's fields are its record; cancelling is the action below

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

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


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "owner", "shared_with_team", "created")
    list_filter = ("shared_with_team", "created")
    search_fields = ("=id", "name", "owner__username")
    list_select_related = ("owner",)
    fields = ("owner", "name", "shared_with_team", "entrypoint", "archive_name", "argv", "stdin", "code", "created")
    readonly_fields = fields

    def get_changelist(self, request, **kwargs):
        return _SubmissionChangeList

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # sharing is the owner's choice, made on the run page

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("hostname", "concurrency", "started", "last_seen")
    readonly_fields = ("hostname", "concurrency", "started", "last_seen")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # workers write these; deleting a departed worker's row is allowed


class _SubmissionChangeList(ChangeList):
    # The list shows no code: leave the large columns out of its query (the change page loads them).
    def get_queryset(self, request, exclude_parameters=None):
        return super().get_queryset(request, exclude_parameters).defer(*selectors.SUBMISSION_BULK)
