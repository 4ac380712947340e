"""Quotas in the admin: one policy per role, overrides per user; every change is audited."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import ValidationError
from django.db import transaction

from evaluations.accounts import audit
from evaluations.models import QuotaFields, QuotaOverride, QuotaPolicy


def _quota_changes(form, names) -> dict:
    return {
        name: {"from": form.initial.get(name), "to": form.cleaned_data.get(name)}
        for name in names
        if name in form.changed_data
    }


QUOTA_HELP = "Empty means no quota of that kind (the site's maxima still apply)."


@admin.register(QuotaPolicy)
class QuotaPolicyAdmin(admin.ModelAdmin):
    list_display = ("role", *QuotaFields.QUOTA_NAMES)
    fields = ("role", *QuotaFields.QUOTA_NAMES)
    readonly_fields = ("role",)

    def has_add_permission(self, request) -> bool:
        return False  # one per role, made by the migration

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        changes = _quota_changes(form, QuotaFields.QUOTA_NAMES)
        obj.save()
        if changes:
            audit.audit_record(
                actor=request.user, action=audit.QUOTA_CHANGE, target=f"role:{obj.role}", request=request, data=changes
            )


class QuotaOverrideForm(forms.ModelForm):
    class Meta:
        model = QuotaOverride
        fields = ("user", *QuotaFields.QUOTA_NAMES)
        help_texts = {name: "Empty: the user's role's quota." for name in QuotaFields.QUOTA_NAMES}


class UserAutocomplete(AutocompleteSelect):
    """Django's widget looks the submitted value up to show the form again: a value that is no user
    id (":", or 40 digits, typed by hand) made that lookup raise, a 500; it is now shown as no choice."""

    def optgroups(self, name, value, attr=None):
        ids = []
        for item in value:
            try:
                ids.append(self.field.target_field.to_python(item))
            except ValidationError:
                pass
        # Nor may an id beyond the database's 64-bit integers reach it.
        return super().optgroups(name, [str(i) for i in ids if i is not None and abs(i) < 2**63], attr)


@admin.register(QuotaOverride)
class QuotaOverrideAdmin(admin.ModelAdmin):
    form = QuotaOverrideForm
    list_display = ("user", *QuotaFields.QUOTA_NAMES)
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)
    list_select_related = ("user",)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            kwargs["widget"] = UserAutocomplete(db_field, self.admin_site, using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        # Moving an override to another user would be two changes (one loses it, one gains it)
        # audited as one under the new name: delete it and add one for the other user instead.
        return ("user",) if obj is not None else ()

    def save_model(self, request, obj, form, change) -> None:
        changes = _quota_changes(form, QuotaFields.QUOTA_NAMES)
        obj.save()
        if changes or not change:
            audit.audit_record(
                actor=request.user,
                action=audit.QUOTA_CHANGE,
                target=f"user:{obj.user.get_username()}",
                request=request,
                data=changes,
            )

    def delete_model(self, request, obj) -> None:
        self.delete_queryset(request, QuotaOverride.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset) -> None:
        with transaction.atomic():
            for override in queryset.select_related("user"):
                changes = {
                    name: {"from": getattr(override, name), "to": None}
                    for name in QuotaFields.QUOTA_NAMES
                    if getattr(override, name) is not None
                }
                audit.audit_record(
                    actor=request.user,
                    action=audit.QUOTA_CHANGE,
                    target=f"user:{override.user.get_username()}",
                    request=request,
                    data=changes,
                )
            queryset.delete()
