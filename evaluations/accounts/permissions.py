"""The one permission layer: every page, API endpoint and websocket asks these rules, through
`allowed`/`require` or the querysets built on the same predicates (`visible_runs_q`). Never
`user.has_perm`: Django grants an active superuser everything, and a superuser's role is admin,
no more (docs/permissions.md).
"""

from __future__ import annotations

import rules
from django.db.models import Q

from evaluations.accounts.roles import role_of, team_id_of
from evaluations.models import Role


@rules.predicate
def is_admin(user) -> bool:
    return role_of(user) == Role.ADMIN


@rules.predicate
def is_reviewer(user) -> bool:
    return role_of(user) == Role.REVIEWER


@rules.predicate
def is_researcher(user) -> bool:
    return role_of(user) == Role.RESEARCHER


@rules.predicate
def owns_run(user, run) -> bool:
    return run is not None and run.submission.owner_id == user.pk


@rules.predicate
def teammate_shared_run(user, run) -> bool:
    if run is None or not run.submission.shared_with_team:
        return False
    mine = team_id_of(user)
    return mine is not None and mine == team_id_of(run.submission.owner)


can_read_runs_of_others = is_reviewer | is_admin

rules.add_perm("evaluations.submit", is_researcher | is_admin)
rules.add_perm("evaluations.view_run", rules.is_active & (owns_run | teammate_shared_run | can_read_runs_of_others))
rules.add_perm("evaluations.cancel_run", rules.is_active & ((owns_run & (is_researcher | is_admin)) | is_admin))
rules.add_perm("evaluations.rerun_run", rules.is_active & owns_run & (is_researcher | is_admin))
# Reviewers are read-only, also on what they submitted before they became reviewers.
rules.add_perm("evaluations.share_submission", rules.is_active & owns_run & (is_researcher | is_admin))
rules.add_perm("evaluations.administer", rules.is_active & is_admin)


def visible_runs_q(user) -> Q:
    """The same rule as evaluations.view_run, as a filter (a matrix test keeps the two equal)."""
    role = role_of(user)
    if role is None:
        return Q(pk__in=[])
    if role in (Role.REVIEWER, Role.ADMIN):
        return Q()
    q = Q(submission__owner_id=user.pk)
    team = team_id_of(user)
    if team is not None:
        q |= Q(submission__shared_with_team=True, submission__owner__profile__team_id=team)
    return q


def allowed(user, perm: str, obj=None) -> bool:
    """Whether the rules grant `perm` (on `obj`): the registry asked directly, not through the
    authentication backends, which let superusers past every rule."""
    return rules.has_perm(perm, user, obj)


def require(user, perm: str, obj=None) -> None:
    """PermissionDenied unless `user` has `perm` (on `obj`). Callers fetch `obj` through a
    visibility selector first, so a run the user may not see is a 404 before this is asked."""
    from django.core.exceptions import PermissionDenied

    if not allowed(user, perm, obj):
        raise PermissionDenied(f"you may not do this ({perm.split('.', 1)[1].replace('_', ' ')})")
