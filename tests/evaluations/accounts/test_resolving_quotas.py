"""Which quotas apply to a user (their role's, overridden per user) and what they used today."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from evaluations.accounts import quotas
from evaluations.models import Profile, QuotaOverride, QuotaPolicy, Role, Run, RunStatus

MiB = 1024 * 1024
# What migration 0004 seeds for researchers.
RESEARCHER = dict(
    concurrent_runs=2,
    runs_per_day=500,
    cpu_seconds_per_day=3600.0,
    max_wall_seconds=300.0,
    max_memory_mb=2048,
    max_output_bytes=1 * MiB,
    max_upload_bytes=10 * MiB,
)


def as_dict(q: quotas.Quotas) -> dict:
    return {name: getattr(q, name) for name in RESEARCHER}


def queued_at(run: Run, when: datetime) -> Run:
    Run.objects.filter(pk=run.pk).update(queued_at=when)
    run.refresh_from_db()
    return run


def test_a_researcher_without_an_override_gets_the_role_defaults(make_user) -> None:
    user = make_user(quotas=None)

    effective = quotas.quotas_for(user)

    assert effective.role == Role.RESEARCHER
    assert as_dict(effective) == RESEARCHER


def test_a_per_user_override_wins_over_the_role(make_user) -> None:
    user = make_user(quotas={"concurrent_runs": 7, "max_memory_mb": 512})

    effective = quotas.quotas_for(user)

    assert effective.concurrent_runs == 7
    assert effective.max_memory_mb == 512
    assert effective.runs_per_day == RESEARCHER["runs_per_day"]  # not overridden: the role's


def test_a_null_override_field_falls_back_to_the_role(make_user) -> None:
    user = make_user(quotas={})  # a row whose every field is NULL

    assert QuotaOverride.objects.filter(user=user).exists()
    assert as_dict(quotas.quotas_for(user)) == RESEARCHER


def test_an_override_of_zero_is_a_limit_of_zero_not_a_fallback(make_user) -> None:
    user = make_user(quotas={"runs_per_day": 0})

    assert quotas.quotas_for(user).runs_per_day == 0


def test_the_role_in_the_profile_decides_which_policy_applies(make_user) -> None:
    reviewer, admin = make_user(quotas=None), make_user(quotas=None)
    Profile.objects.create(user=reviewer, role=Role.REVIEWER)
    Profile.objects.create(user=admin, role=Role.ADMIN)

    assert quotas.quotas_for(reviewer).concurrent_runs == 0
    assert quotas.quotas_for(admin).concurrent_runs == QuotaPolicy.objects.get(role=Role.ADMIN).concurrent_runs == 8


def test_a_superuser_gets_the_admin_quotas_whatever_the_profile_says(make_user) -> None:
    root = make_user(quotas=None, is_superuser=True, is_staff=True)
    Profile.objects.create(user=root, role=Role.RESEARCHER)

    effective = quotas.quotas_for(root)

    assert effective.role == Role.ADMIN
    assert effective.runs_per_day == QuotaPolicy.objects.get(role=Role.ADMIN).runs_per_day


def test_a_changed_policy_applies_to_the_next_check(make_user) -> None:
    user = make_user(quotas=None)
    QuotaPolicy.objects.filter(role=Role.RESEARCHER).update(concurrent_runs=3, runs_per_day=None)

    effective = quotas.quotas_for(user)

    assert effective.concurrent_runs == 3
    assert effective.runs_per_day is None  # NULL in a policy: no quota of that kind


def test_per_run_ceilings_are_the_lower_of_the_site_and_the_quota(make_user, settings) -> None:
    settings.CRUCIBLE_OUTPUT_LIMIT_BYTES = 1 * MiB
    small = make_user(quotas={"max_wall_seconds": 20, "max_memory_mb": 128, "max_output_bytes": 4096})
    large = make_user(quotas={"max_wall_seconds": 10_000, "max_memory_mb": 1 << 20, "max_output_bytes": 64 * MiB})

    tight, loose = quotas.run_ceilings(quotas.quotas_for(small)), quotas.run_ceilings(quotas.quotas_for(large))

    assert (tight.wall_seconds.value, tight.memory_mb.value, tight.output_bytes.value) == (20, 128, 4096)
    assert tight.wall_seconds.from_quota and tight.output_bytes.from_quota
    assert (loose.wall_seconds.value, loose.memory_mb.value, loose.output_bytes.value) == (
        settings.CRUCIBLE_MAX_WALL_SECONDS,
        settings.CRUCIBLE_MAX_MEMORY_MB,
        1 * MiB,
    )
    assert not loose.wall_seconds.from_quota


# --- Usage today -------------------------------------------------------------------------------------


def test_queued_and_running_runs_are_concurrent_whenever_they_were_queued(user, make_run) -> None:
    make_run(user, status=RunStatus.QUEUED)
    queued_at(make_run(user, status=RunStatus.RUNNING), timezone.now() - timedelta(days=3))
    make_run(user, status=RunStatus.SUCCEEDED)

    assert quotas.usage_of(user).concurrent_runs == 2


def test_runs_that_ended_in_error_do_not_count_against_the_day(user, make_run) -> None:
    make_run(user, status=RunStatus.SUCCEEDED, cpu_seconds=1.5)
    make_run(user, status=RunStatus.FAILED, cpu_seconds=2.0)
    make_run(user, status=RunStatus.CANCELLED)
    make_run(user, status=RunStatus.ERROR, reason="worker_lost", cpu_seconds=100.0)

    usage = quotas.usage_of(user)

    assert usage.runs_today == 3
    assert usage.cpu_seconds_today == pytest.approx(3.5)


def test_the_day_starts_at_utc_midnight(user, make_run) -> None:
    now = datetime(2030, 5, 17, 9, 30, tzinfo=UTC)
    queued_at(make_run(user, status=RunStatus.SUCCEEDED, cpu_seconds=5.0), datetime(2030, 5, 16, 23, 59, tzinfo=UTC))
    queued_at(make_run(user, status=RunStatus.SUCCEEDED, cpu_seconds=1.0), datetime(2030, 5, 17, 0, 0, tzinfo=UTC))

    usage = quotas.usage_of(user, now=now)

    assert (usage.runs_today, usage.cpu_seconds_today) == (1, 1.0)
    assert usage.resets_at == datetime(2030, 5, 18, tzinfo=UTC)


def test_other_users_runs_do_not_count(user, other_user, make_run) -> None:
    make_run(other_user, status=RunStatus.QUEUED)

    usage = quotas.usage_of(user)

    assert (usage.concurrent_runs, usage.runs_today, usage.cpu_seconds_today) == (0, 0, 0.0)


def test_the_message_says_which_quota_the_limit_the_usage_and_the_reset() -> None:
    resets = datetime(2030, 5, 18, tzinfo=UTC)
    daily = quotas.QuotaExceeded(quota="runs_per_day", limit=5, usage=5, resets_at=resets)
    cpu = quotas.QuotaExceeded(quota="cpu_seconds_per_day", limit=60.0, usage=61.25, resets_at=resets)
    concurrent = quotas.QuotaExceeded(quota="concurrent_runs", limit=2, usage=2, resets_at=None)

    assert str(daily) == (
        "Quota reached: runs per day. You have started 5 of your 5 runs today "
        "(runs that end in error do not count); it resets at 2030-05-18 00:00 UTC."
    )
    assert "CPU seconds per day" in str(cpu) and "61.2 of your 60 CPU seconds" in str(cpu)
    assert str(concurrent).startswith("Quota reached: concurrent runs. 2 of your 2 runs are queued or running")
    assert daily.retry_after_seconds(now=resets - timedelta(seconds=90)) == 90
    assert concurrent.retry_after_seconds() is None
    assert settings.TIME_ZONE == "UTC"  # the page shows these times as UTC
