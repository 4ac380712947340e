"""Failed-login lockouts (the login page and the admin's), with django-axes: after
CRUCIBLE_LOGIN_FAILURE_LIMIT failures for one username or from one client address, logins from there
are refused for CRUCIBLE_LOGIN_LOCKOUT_SECONDS. Counted in the shared cache (Redis), so every web
process agrees. The refusal says the same whether or not the username exists.
"""

from __future__ import annotations

from datetime import timedelta

from axes.backends import AxesStandaloneBackend
from axes.handlers.cache import AxesCacheHandler
from axes.helpers import get_cache
from django.conf import settings
from django.shortcuts import render


def failure_limit(request, credentials) -> int:
    return settings.CRUCIBLE_LOGIN_FAILURE_LIMIT


def lockout_time(request) -> timedelta:
    return timedelta(seconds=settings.CRUCIBLE_LOGIN_LOCKOUT_SECONDS)


def lockout_message() -> str:
    return (
        f"Too many failed logins for this username or from this address: logins are refused for "
        f"{_duration(settings.CRUCIBLE_LOGIN_LOCKOUT_SECONDS)} after the last failure. "
        "Try again later, or ask an admin to reset your password."
    )


def lockout_response(request, original_response=None, credentials=None):
    """What a locked-out login gets, from the login page and the admin's alike: a 429."""
    context = {"title": "Too many failed logins", "message": lockout_message()}
    response = render(request, "error.html", context, status=429)
    response["Retry-After"] = str(settings.CRUCIBLE_LOGIN_LOCKOUT_SECONDS)
    return response


class LoginLockoutBackend(AxesStandaloneBackend):
    """First of AUTHENTICATION_BACKENDS: refuses logins while locked out. A call without a request
    (the shell, management commands, tests) has no client to count and is let through."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class LoginLockoutCacheHandler(AxesCacheHandler):
    """axes' cache handler, looking the cache up on every use rather than once per process, so a
    changed CACHES setting (a test's key prefix of its own) takes effect."""

    def __init__(self) -> None:
        pass

    @property
    def cache(self):
        return get_cache()


def _duration(seconds: int) -> str:
    if seconds % 60 == 0 and seconds >= 60:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"
