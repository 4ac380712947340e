"""A user's role, derived in one place: admin for a superuser, else their profile's, else researcher.

`role_of` is what permissions ask (None for anonymous or inactive users); `stored_role` is what a
user holds whether or not they may act now (quotas, the admin's forms).
"""

from __future__ import annotations

from evaluations.models import Profile, Role


def role_from(user, profile: Profile | None) -> str:
    """The rule itself, given the user's profile row (or None when they have none)."""
    if user.is_superuser:
        return Role.ADMIN
    return profile.role if profile is not None else Role.RESEARCHER


def stored_role(user) -> str:
    """The role a user holds, read from the database now (active or not)."""
    return role_from(user, Profile.objects.filter(user_id=user.pk).first())


def role_of(user) -> str | None:
    """The role a request acts with: None for anonymous and inactive users."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    return role_from(user, cached_profile(user))


def team_id_of(user) -> int | None:
    profile = cached_profile(user)
    return profile.team_id if profile is not None else None


def cached_profile(user) -> Profile | None:
    # Cached on the user object for the request: every check would otherwise query it again.
    if not hasattr(user, "_crucible_profile"):
        user._crucible_profile = Profile.objects.filter(user_id=user.pk).first()
    return user._crucible_profile


def remember_profile(user) -> None:
    """Cache the profile a query already joined to `user` (select_related("profile"))."""
    try:
        user._crucible_profile = user.profile
    except Profile.DoesNotExist:
        user._crucible_profile = None


def forget_cached_profile(user) -> None:
    """After a change to the user's role or team: the next check reads the row again."""
    user.__dict__.pop("_crucible_profile", None)
