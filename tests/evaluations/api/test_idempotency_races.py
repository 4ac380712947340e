"""Concurrent requests with one Idempotency-Key make one run: the unique constraint on (user, key)
decides, and the loser replays the winner's answer. Real threads, each with its own database
connection, against committed data (on PostgreSQL in CI)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from evaluations.api import idempotency
from evaluations.models import IdempotentRequest, Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("postgresql_in_ci", "no_worker")]

SUBMIT = "/api/v1/submissions/"
KEY = "race-0001"


def submit_together(token_key: str, threads: int) -> list:
    """POST the same submission with the same key from `threads` threads released together."""
    barrier = threading.Barrier(threads)
    answers: list = [None] * threads

    def worker(i: int) -> None:
        try:
            api = APIClient()
            api.credentials(HTTP_AUTHORIZATION=f"Token {token_key}")
            barrier.wait(timeout=30)
            answers[i] = api.post(SUBMIT, {"code": "print(1)\n"}, format="json", HTTP_IDEMPOTENCY_KEY=KEY)
        except Exception as exc:  # a deadlock or an IntegrityError must fail the test, not vanish
            answers[i] = exc
        finally:
            connection.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in pool), "a request hung"
    return answers


def test_two_requests_that_both_found_the_key_free_make_one_run(token, monkeypatch) -> None:
    # Both look the key up before either claims it, so the insert's unique constraint must decide.
    looked_up = threading.Barrier(2)
    first_lookup_done: set[int] = set()
    stored_answer = idempotency._stored_answer

    def both_look_before_either_claims(**kwargs):
        found = stored_answer(**kwargs)
        if threading.get_ident() not in first_lookup_done:
            first_lookup_done.add(threading.get_ident())
            looked_up.wait(timeout=30)
        return found

    monkeypatch.setattr(idempotency, "_stored_answer", both_look_before_either_claims)

    answers = submit_together(token.key, threads=2)

    assert all(not isinstance(a, Exception) for a in answers), answers
    assert [a.status_code for a in answers] == [201, 201], [a.content for a in answers]
    assert answers[0].json() == answers[1].json()
    assert sorted(a.has_header("Idempotent-Replayed") for a in answers) == [False, True]
    assert Run.objects.count() == 1
    assert IdempotentRequest.objects.get().status_code == 201


def test_eight_requests_with_one_key_make_one_run_and_get_one_answer(token) -> None:
    answers = submit_together(token.key, threads=8)

    assert all(not isinstance(a, Exception) for a in answers), answers
    assert {a.status_code for a in answers} == {201}
    assert len({a.content for a in answers if not a.has_header("Idempotent-Replayed")}) == 1
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.has_header("Idempotent-Replayed") for a in answers) == 7
    assert Run.objects.count() == 1
