"""Writes on users: create, role, team, fields, deactivate. Each change is audited in its own
transaction, and open websockets re-check their access once it is committed."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from evaluations.accounts import audit
from evaluations.accounts.roles import forget_cached_profile, stored_role
from evaluations.live import publisher
from evaluations.models import Profile, Role, Team


class SelfLockout(ValidationError):
    """An admin tried to take their own access away (role or active flag)."""


def _user_target(user) -> str:
    return f"user:{user.get_username()}"


def _close_lost_access_on_commit() -> None:
    """Open websockets check again, once the change is visible to them, who may see what."""
    transaction.on_commit(publisher.access_changed)


@transaction.atomic
def user_create(*, actor, user, role: str = Role.RESEARCHER, team: Team | None = None, request=None, via: str):
    """Store a new user (an unsaved User, its password already set or made unusable by the form)
    with its role and team. `actor` None means the user signed up themselves."""
    if role not in Role.values:
        raise ValidationError({"role": f"must be one of {', '.join(Role.values)}, got {role!r}"})
    user.is_staff = role == Role.ADMIN
    user.is_superuser = False
    user.save()
    Profile.objects.create(user=user, role=role, team=team)
    audit.audit_record(
        actor=actor if actor is not None else user,
        action=audit.USER_CREATE,
        target=_user_target(user),
        request=request,
        data={
            "role": role,
            "team": team.name if team else None,
            "via": via,
            "can_log_in": user.has_usable_password(),
        },
    )
    return user


@transaction.atomic
def user_set_role(*, actor, user, role: str, request=None) -> bool:
    """Give `user` exactly one role. Admins get is_staff (they use the Django admin); anyone else
    loses is_staff and is_superuser, so no flag grants more than the role. True if it changed."""
    if role not in Role.values:
        raise ValidationError({"role": f"must be one of {', '.join(Role.values)}, got {role!r}"})
    old = stored_role(user)
    if actor is not None and actor.pk == user.pk and role != old:
        raise SelfLockout({"role": "you cannot change your own role; ask another admin"})
    Profile.objects.update_or_create(user=user, defaults={"role": role})
    flags = {"is_staff": role == Role.ADMIN}
    if role != Role.ADMIN:
        flags["is_superuser"] = False
    type(user).objects.filter(pk=user.pk).update(**flags)
    for name, value in flags.items():
        setattr(user, name, value)
    forget_cached_profile(user)
    if old == role:
        return False
    _close_lost_access_on_commit()
    audit.audit_record(
        actor=actor,
        action=audit.ROLE_CHANGE,
        target=_user_target(user),
        request=request,
        data={"from": old, "to": role},
    )
    return True


@transaction.atomic
def user_set_team(*, actor, user, team: Team | None, request=None) -> bool:
    profile = Profile.objects.filter(user_id=user.pk).select_related("team").first()
    old = profile.team if profile is not None else None
    if old == team:
        return False
    Profile.objects.update_or_create(
        user=user, defaults={"team": team}, create_defaults={"role": stored_role(user), "team": team}
    )
    forget_cached_profile(user)
    _close_lost_access_on_commit()
    audit.audit_record(
        actor=actor,
        action=audit.USER_CHANGE,
        target=_user_target(user),
        request=request,
        data={"team": {"from": old.name if old else None, "to": team.name if team else None}},
    )
    return True


# Fields an admin may change on a user through user_update (the password has its own forms).
USER_FIELDS = ("username", "first_name", "last_name", "email", "is_active")


@transaction.atomic
def user_update(*, actor, user, changes: dict, request=None) -> list[str]:
    """Apply field changes to a user; deactivation is audited as such, the rest as one change.
    Returns the names of the fields that changed."""
    unknown = set(changes) - set(USER_FIELDS)
    if unknown:
        raise ValueError(f"user_update cannot change {sorted(unknown)}")
    current = type(user).objects.filter(pk=user.pk).values(*USER_FIELDS).get()
    changed = {name: {"from": current[name], "to": value} for name, value in changes.items() if current[name] != value}
    if not changed:
        return []
    if changed.get("is_active", {}).get("to") is False and actor is not None and actor.pk == user.pk:
        raise SelfLockout({"is_active": "you cannot deactivate yourself; ask another admin"})
    type(user).objects.filter(pk=user.pk).update(**{name: change["to"] for name, change in changed.items()})
    for name, change in changed.items():
        setattr(user, name, change["to"])
    if "is_active" in changed:
        _close_lost_access_on_commit()
    rest = dict(changed)
    if rest.get("is_active", {}).get("to") is False:
        del rest["is_active"]
        audit.audit_record(actor=actor, action=audit.USER_DEACTIVATE, target=_user_target(user), request=request)
    if rest:
        audit.audit_record(actor=actor, action=audit.USER_CHANGE, target=_user_target(user), request=request, data=rest)
    return sorted(changed)


def user_deactivate(*, actor, user, request=None) -> bool:
    """Deactivate (never delete: the audit log and runs keep their owner). Their sessions and API
    tokens stop working at once, because both check is_active on every request, and the websockets
    they have open are closed (user_update tells them to check)."""
    return bool(user_update(actor=actor, user=user, changes={"is_active": False}, request=request))
