"""The operations page for admins: queue depth, running runs, workers and their heartbeats, and
runs per status in the last hour. Server-rendered; it reloads itself every few seconds."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers

from evaluations.accounts.permissions import require
from evaluations.admin import selectors

REFRESH_SECONDS = 5


@login_required
def ops(request):
    # Non-admins get 403, not 404: the page's existence is no secret, only its contents are.
    require(request.user, "evaluations.administer")
    snapshot = selectors.ops_snapshot()
    context = {
        "snapshot": snapshot,
        "refresh_seconds": REFRESH_SECONDS,
        "stale_seconds": int(selectors.WORKER_STALE_SECONDS),
        "last_hour_total": sum(n for _, n in snapshot.last_hour),
        "retention_days": settings.CRUCIBLE_RETENTION_DAYS,
    }
    response = render(request, "evaluations/ops.html", context)
    add_never_cache_headers(response)
    return response
