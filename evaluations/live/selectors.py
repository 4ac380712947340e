"""Reads for live delivery: which groups a run list joins and a run's status reaches, and who an
open websocket acts for now."""

from __future__ import annotations

from datetime import datetime
from importlib import import_module
from types import SimpleNamespace

from django.conf import settings
from django.contrib.auth import get_user
from django.db.models import Q
from django.utils import timezone

from evaluations.accounts.roles import role_of, team_id_of
from evaluations.live import protocol
from evaluations.live.groups import ALL_RUNS_GROUP, team_group, user_group
from evaluations.models import ApiToken, Profile, Role, Run, RunStatus
from evaluations.runs.selectors import run_list_visible_summaries


def run_list_groups(*, user) -> list[str]:
    """The channel-layer groups a user's run-list websocket joins: the same rule as
    visible_runs_q (every run for reviewers and admins; own runs and the team's shared ones)."""
    role = role_of(user)
    if role is None:
        return []
    if role in (Role.REVIEWER, Role.ADMIN):
        return [ALL_RUNS_GROUP]
    team = team_id_of(user)
    return [user_group(user.pk)] + ([team_group(team)] if team is not None else [])


# A run list's catch-up sends at most this many statuses a pass (the page fetches itself beyond).
LIST_CATCH_UP_LIMIT = 200


def run_list_recent_statuses(*, user, since: datetime) -> list[dict]:
    """Status messages (with `id`) of the runs `user` sees that are queued or running, or ended
    since `since`, newest first: what a run list may have missed of the live messages. Each is one
    indexed query (status; the partial index on finished_at); `queue_position` is left null."""
    recent = Q(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]) | Q(
        finished_at__gte=since, output_expired_at__isnull=True
    )
    runs = run_list_visible_summaries(user=user).filter(recent).order_by("-pk")[:LIST_CATCH_UP_LIMIT]
    now = timezone.now().isoformat()
    return [{"id": run.pk, **protocol.status_message(run, queue_position=None, server_time=now)} for run in runs]


def websocket_user(*, user_id: int, token_id: int | None, session_key: str | None):
    """The user an open websocket acts for, read again from the database; None once they are
    deactivated, their token revoked, or their session ended (logout, password change)."""
    if token_id is not None:
        token = ApiToken.objects.select_related("user").filter(pk=token_id, revoked_at__isnull=True).first()
        user = token.user if token is not None and token.user_id == user_id else None
        return user if user is not None and user.is_active else None
    if session_key is None:
        return None
    # get_user checks what a request with this session would: the session exists, the user is
    # active, and the password hash the session was made with still matches.
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(SimpleNamespace(session=store))
    return user if user.is_authenticated and user.pk == user_id else None


def run_list_audience(*, run: Run) -> list[str]:
    """Besides its owner's: the run-list groups that show this run."""
    groups = [ALL_RUNS_GROUP]
    if run.submission.shared_with_team:
        team = Profile.objects.filter(user_id=run.submission.owner_id).values_list("team_id", flat=True).first()
        if team is not None:
            groups.append(team_group(team))
    return groups
