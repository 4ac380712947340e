"""Account pages outside the admin: self-registration (off unless CRUCIBLE_ALLOW_SIGNUP) and the
page where an invited user sets their password (the link comes from the user admin)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.views import LogoutView as DjangoLogoutView
from django.contrib.auth.views import PasswordResetConfirmView
from django.db import IntegrityError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse_lazy

from evaluations import audit, realtime, services
from evaluations.models import Role
from evaluations.permissions import allowed


class SignupForm(UserCreationForm):
    email = forms.EmailField(required=True, help_text="Where an admin can reach you.")

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")


def signup(request):
    if not settings.CRUCIBLE_ALLOW_SIGNUP:
        raise Http404("Self-registration is off on this site; ask an admin for an account.")
    if request.user.is_authenticated:
        return redirect("run-list")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_create(
                actor=None, user=form.save(commit=False), role=Role.RESEARCHER, request=request, via="signup"
            )
        except IntegrityError:
            # Someone took the name between the form's check and our insert (two sign-ups at once).
            if not username_taken(form.cleaned_data["username"]):
                raise
            form.add_error("username", username_taken_message())
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("run-list")
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)


def username_taken(username: str) -> bool:
    return get_user_model().objects.filter(username=username).exists()


def username_taken_message() -> str:
    """The message the sign-up and user admin forms give for a taken username, word for word."""
    model = get_user_model()
    return model._meta.get_field(model.USERNAME_FIELD).error_messages["unique"]


class RulePerms(dict):
    """`can.submit`, `can.administer` in templates: the rules, asked when a template first looks.
    Not Django's `perms`, which grants a superuser everything whatever their role."""

    def __init__(self, user) -> None:
        super().__init__()
        self.user = user

    def __missing__(self, name: str) -> bool:
        self[name] = allowed(self.user, f"evaluations.{name}")
        return self[name]


def site_context(request) -> dict:
    """Template context for every page: whether to offer self-registration, what the user may do."""
    user = getattr(request, "user", None) or AnonymousUser()
    return {"signup_enabled": settings.CRUCIBLE_ALLOW_SIGNUP, "can": RulePerms(user)}


class PasswordSetView(PasswordResetConfirmView):
    """An invited user (or one an admin sent a new link) chooses their password."""

    template_name = "registration/password_set.html"
    success_url = reverse_lazy("password-set-done")

    def form_valid(self, form):
        response = super().form_valid(form)
        audit.audit_record(
            actor=form.user,
            action=audit.USER_CHANGE,
            target=f"user:{form.user.get_username()}",
            request=self.request,
            data={"changed": ["password"], "via": "set-password link"},
        )
        return response


class LogoutView(DjangoLogoutView):
    """Logging out also closes the websockets this session has open (they re-read their session,
    which exists no more). Sent after the session is flushed: the logout signal comes before."""

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        realtime.access_changed()
        return response
