"""Over a quota, a submission or re-run is refused with what was exceeded, and nothing is stored:
HTTP 429 from the API, a form error on the page. Per-run maxima from the quota are 400s."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from evaluations.accounts import quotas
from evaluations.models import Profile, QuotaOverride, Role, Run, RunStatus
from evaluations.runs import services

SUBMIT = "/api/v1/submissions/"
MiB = 1024 * 1024


def api_as(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def browser_as(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


def submit(user, **fields) -> Run:
    return services.submission_create(owner=user, name="q", code=fields.pop("code", "print(1)\n"), **fields)


# --- Counting quotas ----------------------------------------------------------------------------------


def test_a_submission_over_the_concurrent_quota_is_refused_and_stores_nothing(make_user, counts) -> None:
    user = make_user(quotas={"concurrent_runs": 2})
    submit(user)
    submit(user)
    before = counts()

    with pytest.raises(quotas.QuotaExceeded) as refused:
        submit(user)

    assert (refused.value.quota, refused.value.limit, refused.value.usage) == ("concurrent_runs", 2, 2)
    assert refused.value.resets_at is None
    assert counts() == before


def test_a_run_that_ends_frees_its_concurrent_slot(make_user) -> None:
    user = make_user(quotas={"concurrent_runs": 1})
    first = submit(user)
    Run.objects.filter(pk=first.pk).update(status=RunStatus.SUCCEEDED)

    assert submit(user).status == RunStatus.QUEUED


def test_the_api_answers_429_with_the_quota_and_no_retry_after_for_concurrent_runs(make_user) -> None:
    user = make_user(quotas={"concurrent_runs": 1})
    api = api_as(user)
    assert api.post(SUBMIT, {"code": "print(1)"}, format="json").status_code == 201

    response = api.post(SUBMIT, {"code": "print(2)"}, format="json")

    assert response.status_code == 429
    body = response.json()
    assert body["quota"] == "concurrent_runs"
    assert (body["limit"], body["usage"], body["resets_at"]) == (1, 1, None)
    assert "concurrent runs" in body["detail"] and "1 of your 1 runs are queued or running" in body["detail"]
    assert "Retry-After" not in response
    assert Run.objects.count() == 1


def test_the_api_answers_429_with_retry_after_until_midnight_for_runs_per_day(make_user) -> None:
    user = make_user(quotas={"runs_per_day": 2})
    api = api_as(user)
    for _ in range(2):
        assert api.post(SUBMIT, {"code": "print(1)"}, format="json").status_code == 201

    response = api.post(SUBMIT, {"code": "print(1)"}, format="json")

    assert response.status_code == 429
    body = response.json()
    midnight = quotas.resets_at()
    assert (body["quota"], body["limit"], body["usage"]) == ("runs_per_day", 2, 2)
    assert body["resets_at"] == midnight.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"it resets at {midnight:%Y-%m-%d} 00:00 UTC" in body["detail"]
    assert int(response["Retry-After"]) == pytest.approx((midnight - timezone.now()).total_seconds(), abs=5)
    assert Run.objects.count() == 2


def test_the_api_answers_429_when_todays_cpu_seconds_are_used_up(make_user, make_run) -> None:
    user = make_user(quotas={"cpu_seconds_per_day": 10})
    make_run(user, status=RunStatus.SUCCEEDED, cpu_seconds=6.5)
    make_run(user, status=RunStatus.FAILED, cpu_seconds=3.5)

    response = api_as(user).post(SUBMIT, {"code": "print(1)"}, format="json")

    assert response.status_code == 429
    body = response.json()
    assert (body["quota"], body["limit"], body["usage"]) == ("cpu_seconds_per_day", 10, 10)
    assert "CPU seconds per day" in body["detail"] and "10.0 of your 10 CPU seconds" in body["detail"]
    assert int(response["Retry-After"]) > 0


def test_yesterdays_runs_do_not_count_against_today(make_user, make_run) -> None:
    user = make_user(quotas={"runs_per_day": 1, "cpu_seconds_per_day": 1})
    old = make_run(user, status=RunStatus.SUCCEEDED, cpu_seconds=50.0)
    Run.objects.filter(pk=old.pk).update(queued_at=quotas.day_start() - timedelta(seconds=1))

    assert submit(user, wall_seconds=1).status == RunStatus.QUEUED  # its worst case is 1 CPU second


ROOMY = {"concurrent_runs": 100, "runs_per_day": 100}


def test_queued_and_running_runs_reserve_their_worst_case_cpu_time(make_user) -> None:
    user = make_user(quotas={**ROOMY, "cpu_seconds_per_day": 25})
    submit(user, wall_seconds=10)
    submit(user, wall_seconds=10)  # 20 of 25 reserved, nothing finished yet

    with pytest.raises(quotas.QuotaExceeded) as refused:
        submit(user, wall_seconds=10)

    exc = refused.value
    assert (exc.quota, exc.limit, exc.usage, exc.reserved, exc.requested) == ("cpu_seconds_per_day", 25, 20, 20, 10)
    assert "Quota reached: CPU seconds per day. Your runs today used 20.0 of your 25 CPU seconds" in exc.message
    assert "20.0 reserved by runs still queued or running" in exc.message
    assert "this run could use up to 10 more" in exc.message and "resets at" in exc.message
    assert submit(user, wall_seconds=5).status == RunStatus.QUEUED  # exactly fits: 25 of 25


def test_a_run_that_ends_is_charged_what_it_used_instead_of_its_reservation(make_user) -> None:
    user = make_user(quotas={**ROOMY, "cpu_seconds_per_day": 25})
    first = submit(user, wall_seconds=20)
    with pytest.raises(quotas.QuotaExceeded):
        submit(user, wall_seconds=10)

    Run.objects.filter(pk=first.pk).update(status=RunStatus.SUCCEEDED, cpu_seconds=2.5)

    assert submit(user, wall_seconds=20).status == RunStatus.QUEUED  # 2.5 used + 20 reserved


def test_runs_that_end_in_error_neither_count_nor_reserve_cpu_time(make_user, make_run) -> None:
    user = make_user(quotas={**ROOMY, "cpu_seconds_per_day": 10})
    make_run(user, status=RunStatus.ERROR, reason="worker_lost", cpu_seconds=100.0, wall_seconds=100.0)

    assert submit(user, wall_seconds=10).status == RunStatus.QUEUED


def test_a_rerun_reserves_its_worst_case_cpu_time_too(make_user) -> None:
    user = make_user(quotas={**ROOMY, "cpu_seconds_per_day": 15})
    first = submit(user, wall_seconds=10)

    with pytest.raises(quotas.QuotaExceeded) as refused:
        services.run_rerun(run=first)

    assert (refused.value.quota, refused.value.usage, refused.value.requested) == ("cpu_seconds_per_day", 10, 10)
    assert services.run_rerun(run=first, wall_seconds=5).wall_seconds == 5


def test_runs_that_ended_in_error_do_not_count_against_runs_per_day(make_user, make_run) -> None:
    user = make_user(quotas={"runs_per_day": 2})
    make_run(user, status=RunStatus.ERROR, reason="sandbox_error")
    make_run(user, status=RunStatus.ERROR, reason="worker_lost")
    make_run(user, status=RunStatus.SUCCEEDED)

    submit(user)  # 1 counted before, 2 now
    with pytest.raises(quotas.QuotaExceeded) as refused:
        submit(user)

    assert (refused.value.quota, refused.value.usage) == ("runs_per_day", 2)


def test_the_daily_quota_is_named_before_the_concurrent_one(make_user) -> None:
    # Waiting for a run to end would not help: say the quota that does not free up by itself.
    user = make_user(quotas={"runs_per_day": 1, "concurrent_runs": 1})
    submit(user)

    with pytest.raises(quotas.QuotaExceeded) as refused:
        submit(user)

    assert refused.value.quota == "runs_per_day"


def test_a_rerun_counts_against_the_quota(make_user) -> None:
    user = make_user(quotas={"runs_per_day": 1})
    run = submit(user)

    with pytest.raises(quotas.QuotaExceeded):
        services.run_rerun(run=run)

    assert Run.objects.count() == 1


def test_a_rerun_over_quota_answers_429_on_the_api(make_user) -> None:
    user = make_user(quotas={"concurrent_runs": 1})
    run = submit(user)

    response = api_as(user).post(f"/api/v1/submissions/{run.submission_id}/runs/", {}, format="json")

    assert response.status_code == 429
    assert response.json()["quota"] == "concurrent_runs"
    assert Run.objects.count() == 1


def test_a_rerun_over_quota_on_the_page_says_why_and_creates_nothing(make_user) -> None:
    user = make_user(quotas={"runs_per_day": 1})
    run = submit(user)

    response = browser_as(user).post(f"/runs/{run.pk}/rerun/", follow=True)

    assert response.redirect_chain == [(f"/runs/{run.pk}/", 302)]
    html = response.content.decode()
    assert "Not re-run: Quota reached: runs per day. You have started 1 of your 1 runs today" in html
    assert Run.objects.count() == 1


def test_a_rerun_above_a_since_lowered_maximum_says_so_on_the_page(make_user) -> None:
    user = make_user(quotas={"max_wall_seconds": 60})
    run = submit(user, wall_seconds=60)
    QuotaOverride.objects.filter(user=user).update(max_wall_seconds=20)

    response = browser_as(user).post(f"/runs/{run.pk}/rerun/", follow=True)

    assert response.redirect_chain == [(f"/runs/{run.pk}/", 302)]
    assert "Not re-run: wall_seconds must be between 0.1 and 20 seconds (your quota), got 60" in (
        response.content.decode()
    )
    assert Run.objects.count() == 1


def test_a_rerun_of_code_above_a_since_lowered_upload_quota_is_refused(make_user) -> None:
    user = make_user(quotas={"max_upload_bytes": 4096})
    run = submit(user, code="print(1)\n" + "#" * 3000)
    QuotaOverride.objects.filter(user=user).update(max_upload_bytes=1024)

    response = api_as(user).post(f"/api/v1/submissions/{run.submission_id}/runs/", {}, format="json")
    page = browser_as(user).post(f"/runs/{run.pk}/rerun/", follow=True).content.decode()

    assert response.status_code == 400
    assert response.json() == {"code": ["is 3009 bytes; the limit is 1024 bytes (your quota)"]}
    assert "Not re-run: code is 3009 bytes; the limit is 1024 bytes (your quota)" in page
    assert Run.objects.count() == 1


def test_a_rerun_of_a_project_above_a_since_lowered_upload_quota_is_refused(make_user) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", "print('x')\n" + "#" * 4000)
    data = buffer.getvalue()
    user = make_user(quotas={"max_upload_bytes": len(data)})
    run = services.submission_create(owner=user, name="p", archive=data, archive_name="p.zip")
    QuotaOverride.objects.filter(user=user).update(max_upload_bytes=len(data) - 1)

    with pytest.raises(ValidationError) as refused:
        services.run_rerun(run=Run.objects.get(pk=run.pk))  # the archive as the database returns it

    assert refused.value.message_dict == {
        "file": [f"is {len(data)} bytes; the limit for a project is {len(data) - 1} bytes (your quota)"]
    }
    assert Run.objects.count() == 1


def test_a_rerun_under_quota_gets_the_owners_current_output_cap(make_user, settings) -> None:
    settings.CRUCIBLE_OUTPUT_LIMIT_BYTES = 1 * MiB
    user = make_user(quotas={"runs_per_day": 2, "max_output_bytes": 8192})
    run = submit(user)

    again = services.run_rerun(run=run)

    assert (again.stdout_limit_bytes, again.stderr_limit_bytes) == (8192, 8192)


def test_the_form_shows_an_over_quota_submission_as_a_form_error(make_user, counts) -> None:
    user = make_user(quotas={"runs_per_day": 1})
    browser = browser_as(user)
    assert browser.post("/submit/", {"code": "print(1)"}).status_code == 302
    before = counts()

    response = browser.post("/submit/", {"code": "print(2)"})

    assert response.status_code == 429
    html = response.content.decode()
    assert 'id="error-summary"' in html  # the form's summary of what stopped it, at the top
    assert "Quota reached: runs per day. You have started 1 of your 1 runs today" in html
    assert f"it resets at {quotas.resets_at():%Y-%m-%d} 00:00 UTC" in html
    assert counts() == before


def test_a_reviewer_still_cannot_submit_at_all(make_user, counts) -> None:
    reviewer = make_user(quotas=None)
    Profile.objects.create(user=reviewer, role=Role.REVIEWER)

    response = api_as(reviewer).post(SUBMIT, {"code": "print(1)"}, format="json")

    assert response.status_code == 403
    assert counts() == (0, 0)


def test_a_submission_creates_the_missing_profile_it_locks(make_user) -> None:
    user = make_user(quotas={"concurrent_runs": 5})
    assert not Profile.objects.filter(user=user).exists()

    submit(user)

    assert Profile.objects.get(user=user).role == Role.RESEARCHER


def test_a_superusers_first_submission_gives_them_an_admin_profile(make_user) -> None:
    # createsuperuser makes no profile; the one the lock creates must not make them a researcher.
    root = make_user("root", is_superuser=True, is_staff=True)

    submit(root)

    assert Profile.objects.get(user=root).role == Role.ADMIN


# --- Per-run maxima from the quota ----------------------------------------------------------------


def test_a_wall_time_above_the_users_maximum_is_a_400_naming_the_field_and_the_maximum(make_user, counts) -> None:
    user = make_user(quotas={"max_wall_seconds": 30})

    response = api_as(user).post(SUBMIT, {"code": "print(1)", "wall_seconds": 31}, format="json")

    assert response.status_code == 400
    assert response.json() == {"wall_seconds": ["must be between 0.1 and 30 seconds (your quota), got 31"]}
    assert counts() == (0, 0)


def test_a_memory_limit_above_the_users_maximum_is_a_400_naming_the_field_and_the_maximum(make_user) -> None:
    user = make_user(quotas={"max_memory_mb": 128})

    response = browser_as(user).post("/submit/", {"code": "print(1)", "memory_mb": "129"})

    assert response.status_code == 400
    html = response.content.decode()
    assert "must be between 32 and 128 MiB (your quota), got 129" in html
    assert "at most 128 MiB" in html  # the help text gives the user's own maximum
    assert Run.objects.count() == 0


def test_limits_at_the_users_maximum_are_accepted(make_user) -> None:
    user = make_user(quotas={"max_wall_seconds": 30, "max_memory_mb": 128})

    run = submit(user, wall_seconds=30, memory_mb=128)

    assert (run.wall_seconds, run.memory_bytes) == (30.0, 128 * MiB)


def test_defaults_above_the_users_maximum_are_lowered_to_it(make_user, settings) -> None:
    settings.CRUCIBLE_DEFAULT_WALL_SECONDS, settings.CRUCIBLE_DEFAULT_MEMORY_MB = 10.0, 256
    user = make_user(quotas={"max_wall_seconds": 5, "max_memory_mb": 64})

    run = submit(user)

    assert (run.wall_seconds, run.memory_bytes) == (5.0, 64 * MiB)


def test_the_output_cap_is_the_users_quota_under_the_sites_limit(make_user, settings) -> None:
    settings.CRUCIBLE_OUTPUT_LIMIT_BYTES = 1 * MiB
    small = make_user(quotas={"max_output_bytes": 16 * 1024})
    large = make_user(quotas={"max_output_bytes": 64 * MiB})

    assert submit(small).stdout_limit_bytes == 16 * 1024
    assert submit(large).stderr_limit_bytes == 1 * MiB


def test_code_larger_than_the_upload_quota_is_a_400_naming_the_limit(make_user, counts) -> None:
    user = make_user(quotas={"max_upload_bytes": 100})

    response = api_as(user).post(SUBMIT, {"code": "#" * 101}, format="json")

    assert response.status_code == 400
    assert response.json() == {"code": ["is 101 bytes; the limit is 100 bytes (your quota)"]}
    assert counts() == (0, 0)


def test_a_project_larger_than_the_upload_quota_is_a_400_naming_the_limit(make_user, counts) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", "print('x')\n" + "#" * 4000)
    data = buffer.getvalue()
    user = make_user(quotas={"max_upload_bytes": len(data) - 1})
    upload = SimpleUploadedFile("p.zip", data, content_type="application/zip")

    response = api_as(user).post(SUBMIT, {"file": upload}, format="multipart")

    assert response.status_code == 400
    assert response.json() == {
        "file": [f"is {len(data)} bytes; the limit for a project is {len(data) - 1} bytes (your quota)"]
    }
    assert counts() == (0, 0)


def test_the_sites_maximum_is_named_when_it_is_lower_than_the_quota(make_user, settings) -> None:
    settings.CRUCIBLE_MAX_WALL_SECONDS = 60.0
    user = make_user(quotas={"max_wall_seconds": 600})

    with pytest.raises(ValidationError) as refused:
        submit(user, wall_seconds=61)

    assert refused.value.message_dict == {"wall_seconds": ["must be between 0.1 and 60 seconds, got 61"]}


def test_quota_refusals_are_decided_by_utc_day(make_user, make_run) -> None:
    # A run queued at 00:00:00 UTC today counts; the reset is 24 hours after it.
    user = make_user(quotas={"runs_per_day": 1})
    run = make_run(user, status=RunStatus.SUCCEEDED)
    Run.objects.filter(pk=run.pk).update(queued_at=quotas.day_start())

    with pytest.raises(quotas.QuotaExceeded) as refused:
        submit(user)

    assert refused.value.resets_at == quotas.day_start() + timedelta(days=1)
    assert refused.value.resets_at.tzinfo is not None and refused.value.resets_at.utcoffset() == timedelta(0)
    assert refused.value.resets_at > datetime.now(UTC)
