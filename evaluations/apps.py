"""App configs: Crucible's own app, and the Django admin opened to the admin role."""

from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class EvaluationsConfig(AppConfig):
    default = True  # the one Django picks for "evaluations" (this module holds two configs)
    name = "evaluations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from evaluations.accounts.audit import connect_signals
        from evaluations.live.access import connect_access_signals
        from evaluations.runs import checks  # noqa: F401 - registers the system checks

        connect_signals()  # logins, failed logins and logouts go to the audit log
        connect_access_signals()  # password changes and deleted users close open websockets


class CrucibleAdminConfig(admin_apps.AdminConfig):
    default = False  # named in INSTALLED_APPS instead of django.contrib.admin
    # Here, not in evaluations/admin/: importing that package registers models, which this config
    # is imported too early for.
    default_site = "evaluations.admin.site.CrucibleAdminSite"

    def ready(self) -> None:
        from django.contrib import admin

        from evaluations.admin.site import grant_admin_role_model_permissions

        super().ready()  # autodiscovery: evaluations/admin/ has registered its models by now
        grant_admin_role_model_permissions(admin.site)
