"""The Django admin, opened to the `admin` role (evaluations.administer) rather than to Django's
model permissions: roles are the one permission layer (evaluations/accounts/permissions.py)."""

from __future__ import annotations

from django.contrib import admin


class CrucibleAdminSite(admin.AdminSite):
    site_header = "Crucible administration"
    site_title = "Crucible admin"
    index_title = "Users, quotas, runs and the audit log"
    site_url = "/"

    def has_permission(self, request) -> bool:
        from evaluations.accounts.permissions import allowed

        # The rule, not user.has_perm: that would let in any superuser, role or not.
        return request.user.is_active and allowed(request.user, "evaluations.administer")


def grant_admin_role_model_permissions(site: admin.AdminSite) -> None:
    """The admin role holds Django's model permissions (view/add/change/delete) for every model
    in the admin (and its inlines), as rules, so a ModelAdmin's own limits (no add, read-only...) still decide."""
    import rules

    from evaluations.accounts.permissions import is_admin

    grant = rules.is_active & is_admin
    models = set(site._registry)
    for model_admin in site._registry.values():
        models.update(inline.model for inline in model_admin.inlines)
    for model in models:
        opts = model._meta
        # The bare app label is what has_module_perms asks.
        names = [opts.app_label, *(f"{opts.app_label}.{a}_{opts.model_name}" for a in opts.default_permissions)]
        for name in names:
            if not rules.perm_exists(name):
                rules.add_perm(name, grant)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the admin may list and read but not add, change or delete: records others write (runs,
    the audit log, batches); what an admin may do to them is an action of the subclass."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
