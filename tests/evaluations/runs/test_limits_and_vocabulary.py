"""validation.limits_build ranges, and the one status/reason vocabulary shared with the sandbox."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

import sandbox
from evaluations.models import TERMINAL_STATUSES, Run, RunReason, RunStatus
from evaluations.runs import validation

MiB = 1024 * 1024


def test_no_limits_given_means_the_site_defaults(settings) -> None:
    limits = validation.limits_build(wall_seconds=None, memory_mb=None)

    assert limits.wall_seconds == settings.CRUCIBLE_DEFAULT_WALL_SECONDS
    assert limits.memory_bytes == settings.CRUCIBLE_DEFAULT_MEMORY_MB * MiB
    assert limits.stdout_bytes == limits.stderr_bytes == settings.CRUCIBLE_OUTPUT_LIMIT_BYTES


def test_the_ends_of_each_range_are_allowed(settings) -> None:
    low = validation.limits_build(wall_seconds=0.1, memory_mb=32)
    high = validation.limits_build(
        wall_seconds=settings.CRUCIBLE_MAX_WALL_SECONDS, memory_mb=settings.CRUCIBLE_MAX_MEMORY_MB
    )

    assert (low.wall_seconds, low.memory_bytes) == (0.1, 32 * MiB)
    assert (high.wall_seconds, high.memory_bytes) == (
        settings.CRUCIBLE_MAX_WALL_SECONDS,
        settings.CRUCIBLE_MAX_MEMORY_MB * MiB,
    )


def test_tmp_stays_smaller_than_memory_even_at_the_smallest_memory_limit() -> None:
    limits = validation.limits_build(wall_seconds=None, memory_mb=32)

    assert limits.tmp_bytes == 16 * MiB < limits.memory_bytes


@pytest.mark.parametrize(
    "wall, memory, field, message",
    [
        (0.09, None, "wall_seconds", "must be between 0.1 and 300 seconds, got 0.09"),
        (300.5, None, "wall_seconds", "must be between 0.1 and 300 seconds, got 300.5"),
        (float("nan"), None, "wall_seconds", "must be between 0.1 and 300 seconds, got nan"),
        (float("inf"), None, "wall_seconds", "must be between 0.1 and 300 seconds, got inf"),
        (None, 31, "memory_mb", "must be between 32 and 2048 MiB, got 31"),
        (None, 2049, "memory_mb", "must be between 32 and 2048 MiB, got 2049"),
        (None, -1, "memory_mb", "must be between 32 and 2048 MiB, got -1"),
    ],
    ids=[
        "wall too short",
        "wall too long",
        "wall NaN",
        "wall infinite",
        "memory too small",
        "memory too big",
        "memory negative",
    ],
)
def test_a_limit_outside_its_range_is_refused_with_the_range(settings, wall, memory, field, message) -> None:
    settings.CRUCIBLE_MAX_WALL_SECONDS = 300.0
    settings.CRUCIBLE_MAX_MEMORY_MB = 2048

    with pytest.raises(ValidationError) as caught:
        validation.limits_build(wall_seconds=wall, memory_mb=memory)

    assert caught.value.message_dict == {field: [message]}


def test_the_ranges_follow_the_settings(settings) -> None:
    settings.CRUCIBLE_MAX_MEMORY_MB = 64

    with pytest.raises(ValidationError) as caught:
        validation.limits_build(wall_seconds=None, memory_mb=128)

    assert caught.value.message_dict == {"memory_mb": ["must be between 32 and 64 MiB, got 128"]}


def test_a_site_maximum_beyond_the_sandboxs_own_is_still_refused(settings) -> None:
    # The site may be misconfigured above what the sandbox allows: the sandbox's check still answers.
    settings.CRUCIBLE_MAX_WALL_SECONDS = 10_000.0
    ceiling = sandbox.LIMIT_SPECS["wall_seconds"].maximum

    with pytest.raises(ValidationError) as caught:
        validation.limits_build(wall_seconds=ceiling + 1, memory_mb=None)

    assert list(caught.value.message_dict) == ["wall_seconds"]


def test_the_run_status_vocabulary_is_the_sandboxs() -> None:
    assert RunStatus.values == [s.value for s in sandbox.Status]
    assert RunReason.values == [r.value for r in sandbox.Reason]
    assert TERMINAL_STATUSES == ["succeeded", "failed", "cancelled", "error"]


def test_the_database_refuses_a_status_outside_the_vocabulary(user, make_run) -> None:
    run = make_run(user)

    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.filter(pk=run.pk).update(status="exploded")


def test_the_database_refuses_a_reason_outside_the_vocabulary(user, make_run) -> None:
    run = make_run(user)

    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.filter(pk=run.pk).update(reason="because")
