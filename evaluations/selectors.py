"""Reads: which runs a user may see. Every page and API endpoint goes through these."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from evaluations.models import Run


def run_list_visible(*, user) -> QuerySet[Run]:
    # A user sees their own runs only (roles that see more come with the permissions work).
    return Run.objects.filter(submission__owner=user).select_related("submission")


def run_get_visible(*, user, run_id: int) -> Run:
    """The run, or Http404 — also for another user's run, so its existence does not leak."""
    try:
        return run_list_visible(user=user).get(pk=run_id)
    except Run.DoesNotExist:
        raise Http404("No such run") from None
