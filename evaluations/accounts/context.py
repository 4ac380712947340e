"""Template context for every page: whether to offer sign-up, and what the user may do."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from evaluations.accounts.permissions import allowed


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
