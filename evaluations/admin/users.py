"""Users in the admin: invite, role and team, deactivate. Every change goes through a service in
evaluations/accounts/services.py or is audited here, inside the admin's own transaction."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from evaluations.accounts import audit, roles, services
from evaluations.accounts.selectors import username_taken
from evaluations.models import Profile, Role

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
    url = request.build_absolute_uri(path)
    if settings.CRUCIBLE_BEHIND_TLS_PROXY and url.startswith("http://"):
        # The proxy speaks https to the world even where it forgot to say so to us.
        url = "https://" + url.removeprefix("http://")
    return url


def _link_lifetime() -> str:
    from django.conf import settings

    days = settings.PASSWORD_RESET_TIMEOUT / 86400
    return f"{days:g} day{'s' if days != 1 else ''}"


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
        current = roles.stored_role(obj) if obj is not None else Role.RESEARCHER

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
        # The profile is selected with the list, not one query a row.
        return roles.role_from(user, getattr(user, "profile", None))

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
            kwargs["initial"] = [{"role": roles.stored_role(obj)}]
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
