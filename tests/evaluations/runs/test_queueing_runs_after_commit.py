"""The Celery task is sent only once the submission's rows are committed, and only for stored runs."""

from __future__ import annotations

import json

import pytest
import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from evaluations.models import Run
from evaluations.runs import broker, services


class Queue:
    """The runs queue on the test Redis, as run ids in the order they were sent."""

    def __eq__(self, other: object) -> bool:
        return self.run_ids() == other

    def __iter__(self):
        return iter(self.run_ids())

    def run_ids(self) -> list[int]:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        try:
            raw = client.lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1)
        finally:
            client.close()
        # kombu pushes on the left and pops on the right: the oldest message is last.
        return [broker.run_id_of(json.loads(item)["headers"]["id"]) for item in reversed(raw)]


@pytest.fixture
def sent():
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(settings.CELERY_TASK_DEFAULT_QUEUE)
    yield Queue()
    client.delete(settings.CELERY_TASK_DEFAULT_QUEUE)
    client.close()


def test_the_task_is_sent_only_after_the_commit(user, sent, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        run = services.submission_create(owner=user, name="x", code="print(1)")
        assert sent == []  # still inside the transaction: nothing may reach the worker yet

    assert len(callbacks) == 2  # the task's send, then the queued status for open run lists
    assert sent == []
    callbacks[0]()
    assert sent == [run.pk]
    assert Run.objects.get(pk=run.pk).sent_at is not None  # the reconciler leaves it alone


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
