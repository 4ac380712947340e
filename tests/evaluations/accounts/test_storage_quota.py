"""The storage quota: code, uploads and the kept output of a user's runs count against it; a
submission that would go over it is refused with a 429 naming it; /usage/ shows it and /ops/ shows
the log store's disk use."""

from __future__ import annotations

import re

from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from evaluations.accounts import quotas
from evaluations.admin import selectors as ops_selectors
from evaluations.models import Batch, RunStatus
from evaluations.runs import retention, services

SUBMIT = "/api/v1/submissions/"
KiB = 1024


def api_as(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def test_storage_counts_code_stdin_uploads_and_kept_output(make_user, make_run) -> None:
    user = make_user()
    run = make_run(user, code="é" * 100, stdout=b"x" * 300, stdout_bytes=300, stderr_bytes=5_000_000)

    used = quotas.storage_of(user)

    assert used.uploads == 200  # bytes of UTF-8, not characters
    # stderr's count is what the program wrote; only the limit of it is kept.
    assert used.output == 300 + run.stderr_limit_bytes


def test_storage_counts_batch_inputs_and_only_the_users_own_in_one_query(
    make_user, make_run, django_assert_num_queries
) -> None:
    user, other = make_user(), make_user("someone-else")
    run = make_run(user, code="x" * 10, stdout_bytes=40)
    make_run(other, code="y" * 1000, stdout_bytes=1000)
    Batch.objects.create(owner=user, submission=run.submission, name="b", inputs_bytes=500)
    Batch.objects.create(owner=other, submission=run.submission, name="c", inputs_bytes=7000)

    with django_assert_num_queries(1):
        used = quotas.storage_of(user)

    assert (used.uploads, used.output) == (10 + 500, 40)


def test_a_submission_that_would_go_over_the_storage_quota_is_refused_with_a_429(make_user, make_run, counts) -> None:
    user = make_user(quotas={"concurrent_runs": 100, "runs_per_day": 1000, "storage_bytes": 4 * KiB})
    make_run(user, status=RunStatus.SUCCEEDED, stdout=b"y" * 3000, stdout_bytes=3000)
    before = counts()

    response = api_as(user).post(SUBMIT, {"code": "#" * 2000}, format="json")

    assert response.status_code == 429
    body = response.json()
    assert body["quota"] == "storage_bytes" and body["limit"] == 4 * KiB and body["resets_at"] is None
    assert body["usage"] == 3000 + len("print('hello')\n")
    assert "Quota reached: storage" in body["detail"] and "this submission adds" in body["detail"]
    assert "30 days" in body["detail"]
    assert "Retry-After" not in response
    assert counts() == before
    # A small one still fits.
    assert api_as(user).post(SUBMIT, {"code": "print(1)"}, format="json").status_code == 201


def test_a_rerun_is_refused_once_storage_is_full(make_user, make_run) -> None:
    user = make_user(quotas={"concurrent_runs": 100, "runs_per_day": 1000, "storage_bytes": 2 * KiB})
    run = make_run(user, status=RunStatus.SUCCEEDED, stdout=b"z" * 2048, stdout_bytes=2048)

    try:
        services.run_rerun(run=run)
    except quotas.QuotaExceeded as exc:
        assert exc.quota == "storage_bytes"
    else:
        raise AssertionError("a rerun over the storage quota was accepted")


def test_expired_output_no_longer_counts(make_user, make_run, settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    settings.CRUCIBLE_RETENTION_DAYS = 30
    user = make_user()
    long_ago = timezone.now() - timedelta(days=40)
    make_run(user, status=RunStatus.SUCCEEDED, finished_at=long_ago, stdout=b"o" * 1000, stdout_bytes=1000)
    assert quotas.storage_of(user).output == 1000

    retention.retention_pass()

    assert quotas.storage_of(user).output == 0


def test_the_usage_page_shows_storage_against_the_quota(make_user, make_run) -> None:
    user = make_user(quotas={"storage_bytes": 10 * KiB})
    make_run(user, stdout=b"s" * 2048, stdout_bytes=2048, code="#" * 3057)  # 5 KiB in all
    browser = Client()
    browser.force_login(user)

    html = browser.get("/usage/").content.decode()

    row = re.search(r'<tr id="quota-storage_bytes".*?</tr>', html, re.S).group(0)
    assert "5 KiB" in row and "10 KiB" in row and 'value="50"' in row
    assert 'id="storage-detail"' in html and "deleted 30 days after a run ends" in html


def test_the_ops_page_shows_the_log_stores_size(admin_client, make_user, make_run) -> None:
    make_run(make_user(), stdout=b"d" * 5000, stdout_bytes=5000)
    ops_selectors.log_store_usage(fresh=True)

    html = admin_client.get("/ops/").content.decode()

    storage = re.search(r'<dl class="facts" id="ops-storage">.*?</dl>', html, re.S).group(0)
    assert "4.9 KiB in the output of 1 run, in the database" in storage
    if connection.vendor == "postgresql":
        assert re.search(r'id="log-store-tables">[\d.]+ (KiB|MiB) with their indexes', storage)
    assert "deleted 30 days after its run ends" in storage
