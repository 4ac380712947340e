"""A submission, and reading a queued run, cost a fixed number of database queries: the same with
one user waiting as with many (fair scheduling looks at every waiting user's queue and quotas)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from evaluations.models import RunStatus

SUBMIT = "/api/v1/submissions/"
# Token, quotas, lock, counts, inserts and audit; the queue's state for the status sent on commit and
# again for the response.
MOST_QUERIES_TO_SUBMIT = 30
MOST_QUERIES_TO_READ_A_QUEUED_RUN = 12


def queries_to_submit(api_client, django_capture_on_commit_callbacks) -> int:
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(SUBMIT, {"code": "print(1)"}, format="json")
    assert response.status_code == 201, response.content
    return len(queries)


@pytest.fixture
def others_waiting(make_user, make_run):
    """Ten other users, each with runs queued and running."""

    def _others_waiting(n: int = 10) -> None:
        for i in range(n):
            other = make_user(f"waiting{i}")
            make_run(other, status=RunStatus.RUNNING)
            make_run(other)

    return _others_waiting


@pytest.mark.usefixtures("no_worker")
def test_a_submission_costs_the_same_few_queries_however_many_users_wait(
    api_client, django_capture_on_commit_callbacks, others_waiting
) -> None:
    queries_to_submit(api_client, django_capture_on_commit_callbacks)  # the profile row is made once
    alone = queries_to_submit(api_client, django_capture_on_commit_callbacks)
    others_waiting()

    crowded = queries_to_submit(api_client, django_capture_on_commit_callbacks)

    assert crowded == alone
    assert alone <= MOST_QUERIES_TO_SUBMIT


def test_reading_a_queued_run_costs_the_same_few_queries_however_many_users_wait(
    api_client, user, make_run, others_waiting
) -> None:
    run = make_run(user)

    def queries_to_read() -> int:
        with CaptureQueriesContext(connection) as queries:
            body = api_client.get(f"/api/v1/runs/{run.pk}/").json()
        assert body["status"] == "queued" and body["queue_position"] is not None, body
        return len(queries)

    queries_to_read()  # the token's last use is written once
    alone = queries_to_read()
    others_waiting()

    assert queries_to_read() == alone
    assert alone <= MOST_QUERIES_TO_READ_A_QUEUED_RUN


@pytest.mark.django_db(transaction=True)  # committed as in production: the status is sent before the answer
@pytest.mark.usefixtures("no_worker")
def test_the_201_answers_with_the_queue_state_its_status_message_sent(api_client) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = api_client.post(SUBMIT, {"code": "print(1)"}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["queue_position"] == 0
    looks_at_the_queues = [q for q in queries if 'AS "queued"' in q["sql"]]  # scheduling.owner_queues
    assert len(looks_at_the_queues) == 1
