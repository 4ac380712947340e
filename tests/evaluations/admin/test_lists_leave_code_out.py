"""The admin's run and submission lists and the ops page never load submissions' code, archives
or stdin (up to 12 MiB a row): a list page of them would load every one whole."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

BULK_COLUMNS = (
    '"evaluations_submission"."code"',
    '"evaluations_submission"."archive"',
    '"evaluations_submission"."stdin"',
)


@pytest.mark.parametrize("url", ["/admin/evaluations/run/", "/admin/evaluations/submission/", "/ops/"])
def test_a_list_page_loads_no_code(admin_client, make_user, make_run, url) -> None:
    owner = make_user()
    make_run(owner, code="print('x')\n" * 1000, status="running", started_at=timezone.now())

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url)

    assert response.status_code == 200
    selects = [q["sql"] for q in queries.captured_queries if "evaluations_submission" in q["sql"]]
    assert selects, "the page reads no submission at all: the test proves nothing"
    assert not [sql for sql in selects for column in BULK_COLUMNS if column in sql]
