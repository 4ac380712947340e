"""The Celery task is sent only once the submission's rows are committed, and only for stored runs."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from evaluations.runs import services, tasks


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    """Record run_execute.delay calls instead of talking to Redis (a fake at the unit's edge)."""
    calls: list[int] = []
    monkeypatch.setattr(tasks.execute_run, "delay", lambda run_id: calls.append(run_id))
    return calls


def test_the_task_is_sent_only_after_the_commit(user, sent, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        run = services.submission_create(owner=user, name="x", code="print(1)")
        assert sent == []  # still inside the transaction: nothing may reach the worker yet

    assert len(callbacks) == 1
    assert sent == []
    callbacks[0]()
    assert sent == [run.pk]


def test_an_api_submission_sends_the_task_for_its_run(api_client, sent, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post("/api/v1/submissions/", {"code": "print(1)"}, format="json")

    assert response.status_code == 201
    assert sent == [response.json()["id"]]


def test_a_form_submission_sends_the_task_for_its_run(client, sent, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/submit/", {"code": "print(1)"})

    assert response.status_code == 302
    assert [f"/runs/{run_id}/" for run_id in sent] == [response["Location"]]


def test_a_rejected_submission_sends_nothing(api_client, sent, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api_client.post("/api/v1/submissions/", {"code": "print(1)", "memory_mb": 0}, format="json")

    assert response.status_code == 400
    assert callbacks == []
    assert sent == []


def test_a_rolled_back_submission_sends_nothing(user, sent, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(ValidationError):
            with transaction.atomic():
                services.submission_create(owner=user, name="x", code="print(1)")
                raise ValidationError("the caller's transaction fails after the submission")

    assert callbacks == []
    assert sent == []
