"""The admin's side, in the Django admin: users (invite, role, team, deactivate), teams, quotas per
role and per user, every run (filters, cancel) and the read-only audit log. Only the admin role gets
in (evaluations/admin_site.py). Every role, quota and user change goes through a service or is
audited here, inside the admin's own transaction."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from evaluations import audit, selectors, services
from evaluations.accounts import username_taken
from evaluations.models import (
    Profile,
    QuotaFields,
    QuotaOverride,
    QuotaPolicy,
    Role,
    Run,
    Submission,
    Team,
    WorkerHeartbeat,
)
from evaluations.permissions import allowed

User = get_user_model()

# Groups and Django's model permissions are not how Crucible decides anything: roles are.
if admin.site.is_registered(Group):
    admin.site.unregister(Group)
if admin.site.is_registered(User):
    admin.site.unregister(User)


def set_password_link(request, user) -> str:
    """A one-time link where `user` chooses a password (valid PASSWORD_RESET_TIMEOUT; used once,
    because setting the password changes what the token is made from)."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    path = reverse("password-set", kwargs={"uidb64": uid, "token": default_token_generator.make_token(user)})
    return request.build_absolute_uri(path)


def _link_lifetime() -> str:
    from django.conf import settings

    days = settings.PASSWORD_RESET_TIMEOUT / 86400
    return f"{days:g} day{'s' if days != 1 else ''}"


# --- Users ------------------------------------------------------------------------------------------


class ProfileInline(admin.StackedInline):
    """Role and team, shown on the user's page; saved through services (UserAdmin.save_formset),
    never straight from the form, so each change is audited and is_staff follows the role."""

    model = Profile
    fields = ("role", "team")
    can_delete = False
    min_num = 1
    max_num = 1
    verbose_name = "role and team"
    verbose_name_plural = "role and team"

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        editing_self = obj is not None and obj.pk == request.user.pk
        current = selectors.user_role(user=obj) if obj is not None else Role.RESEARCHER

        class RoleForm(formset.form):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, **kwargs)
                # The role the user has, which is not the row's for a superuser (always admin):
                # shown, and what "changed" is measured against.
                if self.instance.pk is not None:
                    self.initial["role"] = current

        class RoleFormSet(formset):
            form = RoleForm

            def clean(self) -> None:
                super().clean()
                for form in self.forms:
                    role = getattr(form, "cleaned_data", {}).get("role")
                    if editing_self and role and role != current and "role" in form.changed_data:
                        raise ValidationError("You cannot change your own role; ask another admin.")

        return RoleFormSet


class UserCreationWithEmailForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        fields = ("username", "email")


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    inlines = [ProfileInline]
    add_form = UserCreationWithEmailForm
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "email", "usable_password", "password1", "password2"),
                "description": (
                    "To invite someone, choose “Password-based authentication: Disabled”: after saving you "
                    "get a link where they set their own password."
                ),
            },
        ),
    )
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        (
            "Access",
            {
                "fields": ("is_active", "is_staff", "is_superuser"),
                "description": (
                    "What a user may do comes from their role (below). Admins get “staff status” "
                    "(this admin) with the role; other roles lose it. Deactivate instead of deleting: "
                    "sessions and API tokens stop working at once, runs and the audit log are kept."
                ),
            },
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    list_display = ("username", "email", "role", "team", "is_active", "last_login")
    list_filter = ("is_active", "profile__role", "profile__team")
    list_select_related = ("profile", "profile__team")
    actions = ["deactivate_users", "activate_users", "make_set_password_links"]

    def add_view(self, request, form_url="", extra_context=None):
        try:
            return super().add_view(request, form_url, extra_context)
        except IntegrityError:
            # The username was taken between the form's check and the insert (two admins, or an
            # admin and a sign-up, at once); everything was rolled back. Shown again, the form
            # finds the name taken and says so, as it would have a moment later.
            if request.method != "POST" or not username_taken(request.POST.get("username", "")):
                raise
            return super().add_view(request, form_url, extra_context)

    def get_readonly_fields(self, request, obj=None):
        readonly = ["is_staff", "is_superuser", "last_login", "date_joined"]
        if obj is not None and obj.pk == request.user.pk:
            readonly.append("is_active")  # no locking yourself out
        return readonly

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deactivate instead: runs and audit entries keep their user

    @admin.display(description="role", ordering="profile__role")
    def role(self, user) -> str:
        profile = getattr(user, "profile", None)  # selected with the list, not one query a row
        return Role.ADMIN if user.is_superuser else profile.role if profile is not None else Role.RESEARCHER

    @admin.display(description="team", ordering="profile__team__name")
    def team(self, user) -> str:
        profile = getattr(user, "profile", None)  # None when the user has no profile row
        return profile.team.name if profile is not None and profile.team is not None else ""

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            services.user_create(actor=request.user, user=obj, request=request, via="admin")
            return
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in services.USER_FIELDS}
        services.user_update(actor=request.user, user=obj, changes=changes, request=request)

    def save_formset(self, request, form, formset, change) -> None:
        if formset.model is not Profile:
            super().save_formset(request, form, formset, change)
            return
        user = form.instance
        # What formset.save() would have set; the admin's change message reads it.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for profile_form in formset.forms:
            data = getattr(profile_form, "cleaned_data", None)
            if not data:
                continue  # the inline was left as it was
            # Only what the admin changed: saving someone's page for their email must not write
            # the role shown back over the one they have.
            if "role" in profile_form.changed_data:
                services.user_set_role(actor=request.user, user=user, role=data["role"], request=request)
            if "team" in profile_form.changed_data:
                services.user_set_team(actor=request.user, user=user, team=data.get("team"), request=request)

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        # A user without a profile row (made by createsuperuser, say) shows the role they have.
        if isinstance(inline, ProfileInline) and obj.pk and not Profile.objects.filter(user=obj).exists():
            kwargs["initial"] = [{"role": selectors.user_role(user=obj)}]
        return kwargs

    def response_add(self, request, obj, post_url_continue=None):
        if not obj.has_usable_password():
            self.message_user(
                request,
                f"Send {obj.username} this link to set their password (valid for {_link_lifetime()}, "
                f"once): {set_password_link(request, obj)}",
                messages.SUCCESS,
            )
        return super().response_add(request, obj, post_url_continue)

    def user_change_password(self, request, id, form_url=""):
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302 and "/password/" not in response["Location"]:
            user = User.objects.get(pk=id)
            audit.audit_record(
                actor=request.user,
                action=audit.USER_CHANGE,
                target=f"user:{user.get_username()}",
                request=request,
                data={"changed": ["password" if user.has_usable_password() else "password login disabled"]},
            )
        return response

    @admin.action(description="Deactivate selected users")
    def deactivate_users(self, request, queryset) -> None:
        done = 0
        for user in queryset:
            if user.pk == request.user.pk:
                self.message_user(request, "You cannot deactivate yourself; skipped.", messages.WARNING)
                continue
            done += services.user_deactivate(actor=request.user, user=user, request=request)
        self.message_user(
            request,
            f"Deactivated {done} user{'s' if done != 1 else ''}: their sessions and API tokens no longer work.",
            messages.SUCCESS,
        )

    @admin.action(description="Reactivate selected users")
    def activate_users(self, request, queryset) -> None:
        done = sum(
            bool(services.user_update(actor=request.user, user=user, changes={"is_active": True}, request=request))
            for user in queryset
        )
        self.message_user(request, f"Reactivated {done} user{'s' if done != 1 else ''}.", messages.SUCCESS)

    @admin.action(description="Make set-password links (invitations)")
    def make_set_password_links(self, request, queryset) -> None:
        for user in queryset.filter(is_active=True):
            audit.audit_record(
                actor=request.user,
                action=audit.USER_CHANGE,
                target=f"user:{user.get_username()}",
                request=request,
                data={"invite_link": "created"},
            )
            self.message_user(
                request,
                f"Set-password link for {user.username} (valid for {_link_lifetime()}, once): "
                f"{set_password_link(request, user)}",
                messages.INFO,
            )


# --- Teams ------------------------------------------------------------------------------------------


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "member_count", "created")
    search_fields = ("name",)
    readonly_fields = ("members_list", "created")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_members=Count("members"))

    @admin.display(description="members", ordering="_members")
    def member_count(self, team) -> int:
        return team._members

    @admin.display(description="members")
    def members_list(self, team) -> str:
        names = sorted(team.members.values_list("user__username", flat=True)) if team.pk else []
        return ", ".join(names) or "— (set a user's team on their page)"

    def delete_model(self, request, obj) -> None:
        self.delete_queryset(request, Team.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset) -> None:
        # Members leave the team first, each audited, before it goes.
        with transaction.atomic():
            for profile in Profile.objects.filter(team__in=queryset).select_related("user"):
                services.user_set_team(actor=request.user, user=profile.user, team=None, request=request)
            queryset.delete()


# --- Quotas -----------------------------------------------------------------------------------------


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


@admin.register(QuotaOverride)
class QuotaOverrideAdmin(admin.ModelAdmin):
    form = QuotaOverrideForm
    list_display = ("user", *QuotaFields.QUOTA_NAMES)
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)
    list_select_related = ("user",)

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


# --- Runs and submissions ---------------------------------------------------------------------------


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


from evaluations import admin_tokens  # noqa: E402, F401 - API tokens and the audit log (read-only)
