"""The profile page: a user's API tokens — list, create (the key is shown once), revoke."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from evaluations.accounts import tokens
from evaluations.accounts.audit import client_ip
from evaluations.accounts.forms import TokenForm
from evaluations.accounts.roles import role_of
from evaluations.models import ApiToken


def _profile_page(request, form: TokenForm, status: int = 200):
    context = {
        "form": form,
        "tokens": tokens.token_list(user=request.user),
        "role": role_of(request.user),
    }
    return render(request, "evaluations/profile.html", context, status=status)


@login_required
def profile(request):
    return _profile_page(request, TokenForm())


@login_required
@require_POST
def token_create_view(request):
    form = TokenForm(request.POST)
    if form.is_valid():
        try:
            token, key = tokens.token_create(user=request.user, name=form.cleaned_data["name"], ip=client_ip(request))
        except ValidationError as exc:
            form.add_error("name", exc.message_dict.get("name", exc.messages))
        else:
            # The one time the key exists outside the client: rendered here (not kept in a session
            # for a redirect), and never cached.
            response = render(request, "evaluations/token_created.html", {"token": token, "key": key})
            add_never_cache_headers(response)
            return response
    return _profile_page(request, form, status=400)


@login_required
@require_POST
def token_revoke_view(request, token_id: int):
    # Someone else's token is a 404, like someone else's run.
    token = get_object_or_404(ApiToken.objects.select_related("user"), pk=token_id, user=request.user)
    if tokens.token_revoke(token=token, actor=request.user, ip=client_ip(request)):
        messages.success(request, f"Token “{token.name}” ({token.prefix}…) is revoked: the API refuses it from now on.")
    else:
        messages.info(request, f"Token “{token.name}” was already revoked.")
    return redirect("profile")
