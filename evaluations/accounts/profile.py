"""The profile page: a user's API tokens — list, create (the key is shown once), revoke.

A new key goes from the POST to the page that shows it in a short-lived signed cookie that this page
deletes (post/redirect/get): a reload neither makes a second token nor shows the key again, and the
server keeps no copy of the key, only its hash."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST

from evaluations.accounts import tokens
from evaluations.accounts.audit import client_ip
from evaluations.accounts.forms import TokenForm
from evaluations.accounts.roles import role_of
from evaluations.api.throttling import rate_limited
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
@rate_limited
def token_create_view(request):
    form = TokenForm(request.POST)
    if form.is_valid():
        try:
            token, key = tokens.token_create(user=request.user, name=form.cleaned_data["name"], ip=client_ip(request))
        except ValidationError as exc:
            form.add_error("name", exc.message_dict.get("name", exc.messages))
        else:
            response = redirect("token-created", token_id=token.pk)
            response.set_signed_cookie(
                NEW_KEY_COOKIE,
                key,
                salt=_new_key_salt(request.user.pk, token.pk),
                max_age=NEW_KEY_SECONDS,
                path=NEW_KEY_PATH,
                secure=request.is_secure(),
                httponly=True,
                samesite="Strict",
            )
            return response
    return _profile_page(request, form, status=400)


NEW_KEY_COOKIE = "crucible_new_key"
NEW_KEY_PATH = "/profile/tokens/"
NEW_KEY_SECONDS = 120  # the redirect follows at once; the cookie must not outlive that by much


def _new_key_salt(user_id: int, token_id: int) -> str:
    # Bound to the user and the token: a cookie for one token never shows as another's key.
    return f"crucible-new-key:{user_id}:{token_id}"


@login_required
@require_GET
def token_created_view(request, token_id: int):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    try:
        key = request.get_signed_cookie(
            NEW_KEY_COOKIE, salt=_new_key_salt(request.user.pk, token.pk), max_age=NEW_KEY_SECONDS
        )
    except (KeyError, signing.BadSignature):
        key = None
    if key is None:
        messages.info(
            request,
            f"The key of token “{token.name}” was shown once, when it was created, and cannot be shown again. "
            "If you did not copy it, revoke the token and create another.",
        )
        return redirect("profile")
    response = render(request, "evaluations/token_created.html", {"token": token, "key": key})
    response.delete_cookie(NEW_KEY_COOKIE, path=NEW_KEY_PATH, samesite="Strict")
    add_never_cache_headers(response)  # nor kept by the browser's cache
    return response


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
