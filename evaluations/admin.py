from django.contrib import admin

from evaluations.models import Run, Submission


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "owner", "created")
    search_fields = ("name", "owner__username")
    raw_id_fields = ("owner",)


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("id", "submission", "status", "reason", "exit_code", "queued_at", "finished_at")
    list_filter = ("status", "reason")
    raw_id_fields = ("submission",)
    exclude = ("stdout", "stderr")
    readonly_fields = [f.name for f in Run._meta.fields if f.name not in ("stdout", "stderr")]


from evaluations import admin_tokens  # noqa: E402, F401 - API tokens and the audit log (read-only)
