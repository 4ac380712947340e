"""While the database or Redis cannot be reached, requests answer 503 with Retry-After (JSON under
/api/, a page elsewhere) and one WARNING line, never a 500; other database errors stay 500s.

The failures are real: a PostgreSQL client and a Redis client of a closed port (nothing listens on
127.0.0.1:1), a locked SQLite file, a missing table, a broken constraint.
"""

from __future__ import annotations

import logging
import sqlite3

import pytest
import redis
from django.contrib.auth import get_user_model
from django.db import DatabaseError, IntegrityError, connection, connections
from django.http import HttpResponse
from django.test import Client
from django.urls import path
from redis.backoff import NoBackoff
from redis.retry import Retry
from rest_framework.test import APIClient
from rest_framework.views import APIView

from evaluations.unavailable import DATABASE, REDIS, unavailable_service

DB_PASSWORD = "s3cret-db-password"
DATABASE_BODY = {
    "detail": "The database is unavailable for a moment; try again in a few seconds.",
    "code": "unavailable",
}


def redis_of_a_closed_port() -> redis.Redis:
    # No retries: redis-py's default backs off for seconds before it gives up.
    return redis.Redis(
        host="127.0.0.1",
        port=1,
        socket_connect_timeout=1,
        password="s3cret-redis-password",
        retry=Retry(NoBackoff(), 0),
    )


def queue_view(request):
    redis_of_a_closed_port().ping()
    return HttpResponse("unreachable")


class QueueApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    def get(self, request):
        redis_of_a_closed_port().ping()
        return HttpResponse("unreachable")


def duplicate_user_view(request):
    get_user_model().objects.create(username="twin")
    get_user_model().objects.create(username="twin")
    return HttpResponse("unreachable")


urlpatterns = [
    path("queue/", queue_view),
    path("api/plain/queue/", queue_view),
    path("api/drf/queue/", QueueApi.as_view()),
    path("duplicate/", duplicate_user_view),
]


@pytest.fixture
def database_down(django_db_blocker):
    """The default connection swapped for a PostgreSQL client of a closed port, whose password must
    never reach a log."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    original = connections["default"]
    broken = DatabaseWrapper(
        {
            **original.settings_dict,
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "127.0.0.1",
            "PORT": "1",
            "NAME": "crucible",
            "USER": "crucible",
            "PASSWORD": DB_PASSWORD,
            "OPTIONS": {"connect_timeout": 2},
            "CONN_MAX_AGE": 0,
        },
        alias="default",
    )
    connections["default"] = broken
    try:
        with django_db_blocker.unblock():
            yield
    finally:
        broken.close()
        connections["default"] = original


def warnings_and_worse(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_api_request_answers_503_json_with_retry_after_while_the_database_is_down(database_down, caplog) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token cru_" + "a" * 40)

    response = api.get("/api/v1/runs/")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == DATABASE_BODY


def test_a_submission_answers_503_while_the_database_is_down(database_down) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token cru_" + "a" * 40)

    response = api.post("/api/v1/submissions/", {"code": "print(1)"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert response.status_code == 503
    assert response.json() == DATABASE_BODY


def test_a_page_answers_a_503_page_that_needs_neither_database_nor_session(database_down, settings) -> None:
    browser = Client()
    browser.cookies[settings.SESSION_COOKIE_NAME] = "a" * 32  # so the session is read: from the database

    response = browser.get("/runs/")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "The database is unavailable for a moment; try again in a few seconds." in html
    assert "crucible.css" in html and "<h1>Unavailable for a moment</h1>" in html


def test_the_outage_is_logged_as_one_warning_line_without_the_password(database_down, caplog) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token cru_" + "a" * 40)

    with caplog.at_level(logging.INFO):
        assert api.get("/api/v1/runs/").status_code == 503

    [record] = warnings_and_worse(caplog)
    assert record.name == "evaluations.unavailable" and record.levelno == logging.WARNING
    line = record.getMessage()
    assert line.startswith("GET /api/v1/runs/ answered 503: the database is unreachable (OperationalError:")
    assert "\n" not in line and "Traceback" not in caplog.text
    assert DB_PASSWORD not in caplog.text


@pytest.mark.urls(__name__)
def test_a_page_that_loses_redis_answers_503(caplog) -> None:
    with caplog.at_level(logging.INFO):
        response = Client().get("/queue/")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "The message queue is unavailable for a moment" in response.content.decode()
    [record] = warnings_and_worse(caplog)
    assert "the redis is unreachable (ConnectionError:" in record.getMessage()
    assert "s3cret-redis-password" not in caplog.text


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("url", ["/api/plain/queue/", "/api/drf/queue/"], ids=["a Django view", "a DRF view"])
def test_an_api_view_that_loses_redis_answers_503_json(url) -> None:
    response = Client().get(url)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json() == {
        "detail": "The message queue is unavailable for a moment; try again in a few seconds.",
        "code": "unavailable",
    }


def test_api_views_answer_the_same_503_without_the_middleware(database_down, settings) -> None:
    # DRF handles its views' exceptions itself (evaluations/api/errors.py), before any middleware.
    settings.MIDDLEWARE = [
        m for m in settings.MIDDLEWARE if m != "evaluations.unavailable.ServiceUnavailableMiddleware"
    ]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token cru_" + "a" * 40)

    response = api.get("/api/v1/runs/")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json() == DATABASE_BODY


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_a_broken_constraint_is_not_an_outage_and_stays_a_500() -> None:
    response = Client(raise_request_exception=False).get("/duplicate/")

    assert response.status_code == 500
    assert not response.has_header("Retry-After")


def error_of(run) -> DatabaseError:
    with pytest.raises(DatabaseError) as caught:
        run()
    return caught.value


def sqlite_wrapper(name: str, timeout: float = 0):
    from django.db.backends.sqlite3.base import DatabaseWrapper

    return DatabaseWrapper(
        {**connections["default"].settings_dict, "ENGINE": "django.db.backends.sqlite3", "NAME": name}
        | {"OPTIONS": {"timeout": timeout}, "CONN_MAX_AGE": 0},
        alias="sqlite-probe",
    )


def query(wrapper, sql: str):
    def run():
        try:
            with wrapper.cursor() as cursor:
                cursor.execute(sql)
        finally:
            wrapper.close()

    return run


def test_a_refused_postgresql_connection_is_the_database_being_unavailable(database_down) -> None:
    assert unavailable_service(error_of(connection.ensure_connection)) == DATABASE


def test_a_missing_sqlite_table_is_a_bug_not_an_outage(django_db_blocker) -> None:
    with django_db_blocker.unblock():
        exc = error_of(query(sqlite_wrapper(":memory:"), "SELECT * FROM no_such_table"))

    assert "no such table" in str(exc)
    assert unavailable_service(exc) is None


def test_a_locked_sqlite_database_is_unavailable(django_db_blocker, tmp_path) -> None:
    name = str(tmp_path / "locked.sqlite3")
    holder = sqlite3.connect(name, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with django_db_blocker.unblock():
            exc = error_of(query(sqlite_wrapper(name), "SELECT * FROM t"))
    finally:
        holder.close()

    assert "locked" in str(exc)
    assert unavailable_service(exc) == DATABASE


@pytest.mark.django_db
def test_an_integrity_error_is_not_an_outage(make_user) -> None:
    make_user("twin")

    exc = error_of(lambda: make_user("twin"))

    assert isinstance(exc, IntegrityError)
    assert unavailable_service(exc) is None


def postgresql_wrapper():
    """A connection to the machine's PostgreSQL (make test and CI run one), whatever the tests' own
    database is."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    return DatabaseWrapper(
        {
            **connections["default"].settings_dict,
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "postgres",
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "OPTIONS": {},
            "CONN_MAX_AGE": 0,
        },
        alias="postgresql-probe",
    )


def test_a_postgresql_statement_timeout_is_not_an_outage(django_db_blocker) -> None:
    wrapper = postgresql_wrapper()

    def run():
        try:
            with wrapper.cursor() as cursor:
                cursor.execute("SET statement_timeout = 10")
                cursor.execute("SELECT pg_sleep(1)")
        finally:
            wrapper.close()

    with django_db_blocker.unblock():
        exc = error_of(run)

    assert getattr(exc.__cause__, "sqlstate", None) == "57014"
    assert unavailable_service(exc) is None


def test_a_refused_redis_connection_is_redis_being_unavailable() -> None:
    with pytest.raises(redis.exceptions.ConnectionError) as caught:
        redis_of_a_closed_port().ping()

    assert unavailable_service(caught.value) == REDIS


@pytest.mark.parametrize("url", ["/no-such-page/", "/runs/999999/"])
def test_a_not_found_page_with_a_session_answers_503_while_the_database_is_down(database_down, settings, url):
    browser = Client()
    browser.cookies[settings.SESSION_COOKIE_NAME] = "a" * 32

    response = browser.get(url)

    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert "The database is unavailable" in response.content.decode()


@pytest.mark.django_db
def test_a_not_found_page_is_still_a_404_otherwise(client) -> None:
    assert client.get("/no-such-page/").status_code == 404
