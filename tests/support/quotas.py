"""Quotas for test users: tests submit more runs at once than a researcher's default allows."""

from __future__ import annotations

from typing import Any

# A per-user override (evaluations.models.QuotaOverride); the other quotas stay the role's.
GENEROUS_QUOTAS: dict[str, Any] = {"concurrent_runs": 1000, "runs_per_day": 100_000}


def give_generous_quotas(user) -> None:
    from evaluations.models import QuotaOverride

    QuotaOverride.objects.update_or_create(user=user, defaults=GENEROUS_QUOTAS)
