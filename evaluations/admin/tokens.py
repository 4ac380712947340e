"""Admin for API tokens (read-only, with a "revoke selected tokens" action) and the audit log
(read-only). Imported at the end of evaluations/admin.py. The key hash is never shown."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count

from evaluations.accounts import tokens
from evaluations.accounts.audit import client_ip
from evaluations.accounts.permissions import allowed
from evaluations.admin.site import ReadOnlyAdmin
from evaluations.models import ApiToken, AuditEvent

TOKEN_FIELDS = ("user", "name", "prefix", "created", "last_used_at", "revoked_at")


class RevokedFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "revoked"

    def lookups(self, request, model_admin):
        return [("no", "active"), ("yes", "revoked")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = TOKEN_FIELDS
    list_filter = (RevokedFilter, "created")
    search_fields = ("user__username", "name", "prefix")
    list_select_related = ("user",)
    fields = TOKEN_FIELDS  # never key_hash
    readonly_fields = TOKEN_FIELDS
    actions = ["revoke_selected"]

    def has_add_permission(self, request) -> bool:
        return False  # users create their own tokens on their profile page: only they see the key

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # revoking is the only change, through the action

    def has_revoke_permission(self, request) -> bool:
        user = request.user
        return allowed(user, "evaluations.administer") or allowed(user, "evaluations.change_apitoken")

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_selected(self, request, queryset) -> None:
        revoked = sum(
            tokens.token_revoke(token=token, actor=request.user, ip=client_ip(request))
            for token in queryset.select_related("user").filter(revoked_at__isnull=True)
        )
        self.message_user(
            request,
            f"Revoked {revoked} token{'s' if revoked != 1 else ''}; the API refuses them from now on.",
            messages.SUCCESS,
        )


class ActorFilter(admin.SimpleListFilter):
    """By who did it: the names recorded (kept when a user is deleted), most active first."""

    title = "actor"
    parameter_name = "actor_name"
    SHOWN = 50

    def lookups(self, request, model_admin):
        names = (
            AuditEvent.objects.exclude(actor_name="")
            .values_list("actor_name", flat=True)
            .annotate(n=Count("id"))
            .order_by("-n", "actor_name")[: self.SHOWN]
        )
        return [("-", "the system (no user)"), *((name, name) for name in names)]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "-":
            return queryset.filter(actor_name="")
        if value:
            return queryset.filter(actor_name=value)
        return queryset


def change_words(data) -> str:
    """A change recorded as {"from": a, "to": b}, or {field: {"from": a, "to": b}, ...}, in words."""
    if not isinstance(data, dict):
        return ""
    if "from" in data and "to" in data:
        return f"{_value_words(data['from'])} → {_value_words(data['to'])}"
    parts = [
        f"{name.replace('_', ' ')}: {_value_words(value['from'])} → {_value_words(value['to'])}"
        for name, value in data.items()
        if isinstance(value, dict) and "from" in value and "to" in value
    ]
    return "; ".join(parts)


def _value_words(value) -> str:
    return "none" if value in (None, "") else str(value)


class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor_name", "action", "target", "change", "ip")
    list_filter = ("action", ActorFilter, "at")
    search_fields = ("actor_name", "target")
    date_hierarchy = "at"
    fields = ("at", "actor", "actor_name", "action", "target", "change", "ip", "data")
    readonly_fields = fields

    @admin.display(description="change (old → new)")
    def change(self, event: AuditEvent) -> str:
        return change_words(event.data)


# The admin helper's evaluations/admin.py may register its own (imported before this module).
if not admin.site.is_registered(AuditEvent):
    admin.site.register(AuditEvent, AuditEventAdmin)
