"""Reads on users: their team, and whether a username is taken."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from evaluations.models import Profile, Team


def user_team(*, user) -> Team | None:
    profile = Profile.objects.filter(user_id=user.pk).select_related("team").first()
    return profile.team if profile is not None else None


def username_taken(username: str) -> bool:
    return get_user_model().objects.filter(username=username).exists()


def username_taken_message() -> str:
    """The message the sign-up and user admin forms give for a taken username, word for word."""
    model = get_user_model()
    return model._meta.get_field(model.USERNAME_FIELD).error_messages["unique"]
