"""Account pages outside the admin: sign-up (off unless CRUCIBLE_ALLOW_SIGNUP), the page where an
invited user sets their password (the link comes from the user admin), logout and usage."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LogoutView as DjangoLogoutView
from django.contrib.auth.views import PasswordResetConfirmView
from django.db import IntegrityError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse_lazy

from evaluations.accounts import audit, quotas, services
from evaluations.accounts.forms import SignupForm
from evaluations.accounts.selectors import username_taken, username_taken_message
from evaluations.live import publisher
from evaluations.models import Role


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
        publisher.access_changed()
        return response


@login_required
def usage(request):
    report = quotas.usage_report(request.user)
    context = {"report": report, "retention_days": settings.CRUCIBLE_RETENTION_DAYS}
    return render(request, "evaluations/usage.html", context)
