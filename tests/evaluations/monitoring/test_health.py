"""/healthz answers while nothing else does; /readyz answers 200 only when the database, every Redis,
a worker's fresh heartbeat and the workers' sandbox check all pass, else 503 naming what failed.

The checks read in threads of their own, so the rows they read must be committed (transaction=True).
"""

from __future__ import annotations

import pytest
from django.test import Client

from evaluations.runs import lifecycle
from tests.evaluations.monitoring.health_support import READINESS_CHECKS, beat, checks_of, readyz, redis_everywhere

CLOSED_PORT_REDIS = "redis://:s3cret-redis-password@127.0.0.1:1/0"


def test_healthz_answers_ok_with_no_database_and_no_redis(settings) -> None:
    # No django_db mark: any database access would raise, and every Redis is a closed port.
    redis_everywhere(settings, CLOSED_PORT_REDIS)

    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db(transaction=True)
def test_readyz_answers_200_without_a_login_when_a_worker_beat_just_now() -> None:
    beat()

    response = readyz()

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["failing"]) == ("ok", [])
    assert [check["name"] for check in body["checks"]] == READINESS_CHECKS
    for check in body["checks"]:
        assert check["ok"] is True, check
        assert isinstance(check["duration_ms"], float) and 0 <= check["duration_ms"] < 2000, check
        assert check["detail"], check
    assert checks_of(response)["workers"]["detail"].startswith("1 worker(s) taking runs")


@pytest.mark.django_db(transaction=True)
def test_readyz_answers_503_naming_workers_when_the_last_heartbeat_is_over_30_s_old() -> None:
    beat(ago=31)

    response = readyz()

    assert response.status_code == 503
    assert response.json()["failing"] == ["workers"]
    assert checks_of(response)["workers"]["detail"] == "no worker heartbeat in the last 30 s: the last came 31 s ago"


@pytest.mark.django_db(transaction=True)
def test_readyz_answers_503_naming_workers_and_sandbox_when_no_worker_ever_started() -> None:
    response = readyz()

    assert response.status_code == 503
    assert response.json()["failing"] == ["workers", "sandbox"]
    checks = checks_of(response)
    assert checks["workers"]["detail"] == "no worker heartbeat in the last 30 s: no worker has ever started"
    assert checks["sandbox"]["detail"] == "no worker has checked the sandbox runtime in the last 1 h"


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_stopped_does_not_count_as_taking_runs() -> None:
    beat()
    lifecycle.worker_stopped(hostname="celery@alpha")

    response = readyz()

    assert response.status_code == 503
    assert response.json()["failing"] == ["workers"]
    assert checks_of(response)["workers"]["detail"].endswith("when it stopped")


@pytest.mark.django_db(transaction=True)
def test_readyz_answers_503_naming_sandbox_when_a_worker_reports_a_runtime_problem() -> None:
    beat("celery@alpha")
    beat("celery@beta", ago=5, problem="refused to start: runsc (gVisor) is not installed.")

    response = readyz()

    assert response.status_code == 503
    assert response.json()["failing"] == ["sandbox"]
    assert checks_of(response)["sandbox"]["detail"] == (
        "1 worker(s) cannot start sandboxes; the latest said, 5 s ago: "
        "refused to start: runsc (gVisor) is not installed."
    )


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_started_after_refusing_passes_the_sandbox_check() -> None:
    beat("celery@alpha", ago=20, problem="refused to start: runsc (gVisor) is not installed.")
    beat("celery@alpha")  # the same node, started again once runsc was installed

    response = readyz()

    assert response.status_code == 200, response.content


@pytest.mark.django_db(transaction=True)
def test_the_sandbox_check_shows_no_password_a_worker_reported() -> None:
    beat("celery@alpha")
    beat("celery@beta", problem="refused to start: dockerd at tcp://admin:hunter2@docker:2376 does not answer")

    response = readyz()

    detail = checks_of(response)["sandbox"]["detail"]
    assert "tcp://***@docker:2376 does not answer" in detail
    assert "hunter2" not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_redis_is_named_without_its_password_or_host(settings) -> None:
    beat()
    settings.CELERY_BROKER_URL = CLOSED_PORT_REDIS

    response = readyz()

    assert response.status_code == 503
    assert response.json()["failing"] == ["redis_broker"]
    assert checks_of(response)["redis_broker"]["detail"] == "ConnectionError: connection refused"
    assert "s3cret" not in response.content.decode()
    assert "127.0.0.1" not in response.content.decode()


def test_readyz_and_healthz_answer_405_to_a_post(settings) -> None:
    assert Client().post("/healthz").status_code == 405
    assert Client().post("/readyz").status_code == 405
