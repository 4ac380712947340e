"""API tokens: created with a name, shown once, stored only as a SHA-256, revoked at once.

A key is "cru_" + 43 URL-safe characters (256 random bits): a hash without a salt is enough for
keys that random, and it lets the lookup be one indexed equality. The first characters are kept
as a prefix so people can tell their tokens apart in lists.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from evaluations.accounts import audit
from evaluations.accounts.roles import remember_profile
from evaluations.live import publisher
from evaluations.models import ApiToken

KEY_PREFIX = "cru_"
PREFIX_CHARS = 12  # "cru_" and 8 random characters
MAX_KEY_CHARS = 200  # anything longer is not one of ours; no need to hash it
# last_used_at is updated at most this often, so a busy script does not cost a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
NAME_MAX_CHARS = 100
# Live (unrevoked) tokens one user may hold. The rate limits count per user as well as per token,
# but a cap keeps the token list something a person can still review.
MAX_LIVE_TOKENS = 20


class TokenRejected(Exception):
    """The key does not authenticate anyone; the message says why, for the API's 401."""


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def token_name_clean(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "give the token a name, e.g. the script or machine that will use it"})
    if len(name) > NAME_MAX_CHARS:
        raise ValidationError({"name": f"must be at most {NAME_MAX_CHARS} characters, got {len(name)}"})
    if "\x00" in name:
        raise ValidationError({"name": "contains a NUL byte"})
    return name


@transaction.atomic
def token_create(*, user, name: str | None, ip: str | None = None) -> tuple[ApiToken, str]:
    """A new token for `user`: the row, and the key — which exists only in this return value.
    ValidationError (on "name") once the user has MAX_LIVE_TOKENS live ones."""
    clean = token_name_clean(name)
    # The user's row locked, so two creations at once cannot both see room for one more.
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
    live = ApiToken.objects.filter(user=user, revoked_at__isnull=True).count()
    if live >= MAX_LIVE_TOKENS:
        raise ValidationError(
            {
                "name": f"you already have {live} live API tokens, the most one user may have; "
                "revoke one you no longer use on your profile page, then create this one"
            }
        )
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=clean, prefix=key[:PREFIX_CHARS], key_hash=key_hash(key))
    audit.audit_record(
        actor=user,
        action=audit.TOKEN_CREATE,
        target=f"token:{token.pk}",
        ip=ip,
        data={"name": clean, "prefix": token.prefix, "user": user.get_username()},
    )
    return token, key


@transaction.atomic
def token_revoke(*, token: ApiToken, actor=None, ip: str | None = None) -> bool:
    """Revoke a token (by its owner, or an admin as `actor`). False if it was already revoked."""
    now = timezone.now()
    revoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now) == 1
    if revoked:
        token.revoked_at = now
        transaction.on_commit(publisher.access_changed)  # websockets opened with it close at once
        audit.audit_record(
            actor=actor if actor is not None else token.user,
            action=audit.TOKEN_REVOKE,
            target=f"token:{token.pk}",
            ip=ip,
            data={"name": token.name, "prefix": token.prefix, "user": token.user.get_username()},
        )
    return revoked


def token_user(key: str) -> tuple[object, ApiToken]:
    """(user, token) for a key; TokenRejected saying why not. Revocation and deactivation are
    read from the database on every call, so they take effect on the next request."""
    if not key or len(key) > MAX_KEY_CHARS:
        raise TokenRejected("invalid token: no such API token. Create one on your profile page (/profile/)")
    token = ApiToken.objects.select_related("user", "user__profile").filter(key_hash=key_hash(key)).first()
    if token is None:
        raise TokenRejected("invalid token: no such API token. Create one on your profile page (/profile/)")
    if token.revoked_at is not None:
        raise TokenRejected(
            f"this API token ({token.prefix}…) was revoked at {token.revoked_at:%Y-%m-%d %H:%M} UTC; "
            "create a new one on your profile page (/profile/)"
        )
    if not token.user.is_active:
        raise TokenRejected("this account is deactivated, so its API tokens no longer work")
    _touch(token)
    remember_profile(token.user)  # read with the token: the request's role checks need no query
    return token.user, token


def authenticate(key: str):
    """The active user a key belongs to, or None (unknown or revoked key, inactive user)."""
    try:
        return token_user(key)[0]
    except TokenRejected:
        return None


def _touch(token: ApiToken) -> None:
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    # Conditional, so concurrent requests write it once; the time is coarse on purpose.
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ApiToken.objects.filter(stale, pk=token.pk).update(last_used_at=now)
    token.last_used_at = now


def token_list(*, user):
    """A user's tokens: live ones first, newest first."""
    return ApiToken.objects.filter(user=user).order_by(F("revoked_at").desc(nulls_first=True), "-created", "-id")
