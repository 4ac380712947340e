"""/readyz while a real Redis or PostgreSQL is stopped or hangs (SIGSTOP): it answers 503 within
about the check timeout, as JSON naming the failing checks (not the unavailable middleware's page),
and 200 again once the service is back. A real worker that cannot start sandboxes fails the
sandbox check."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connections

from evaluations.monitoring.health import CHECK_TIMEOUT_SECONDS
from tests.e2e.conftest import database_url_for_subprocesses
from tests.evaluations.monitoring.health_support import REDIS_CHECKS, beat, checks_of, readyz, redis_everywhere
from tests.support.postgres_cluster import PostgresCluster
from tests.support.redis_server import RedisServer
from tests.support.stack import REPO_ROOT, VENV_BIN

# The answer's deadline: the checks' timeout, and some room for a loaded machine.
ANSWER_WITHIN_SECONDS = CHECK_TIMEOUT_SECONDS + 1.5


def timed_readyz():
    started = time.monotonic()
    response = readyz()
    return response, time.monotonic() - started


def wait_ready(timeout: float = 15):
    deadline = time.monotonic() + timeout
    while (response := readyz()).status_code != 200:
        assert time.monotonic() < deadline, response.json()
        time.sleep(0.2)
    return response


@pytest.fixture
def private_redis(settings):
    with RedisServer() as server:
        redis_everywhere(settings, server.url())
        yield server


@pytest.mark.django_db(transaction=True)
def test_readyz_names_each_redis_check_while_redis_is_down_and_recovers(private_redis) -> None:
    beat()
    assert readyz().status_code == 200

    private_redis.stop()
    response, took = timed_readyz()

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json()["failing"] == REDIS_CHECKS
    checks = checks_of(response)
    for name in REDIS_CHECKS:
        assert checks[name]["detail"] == "ConnectionError: connection refused", checks[name]
    assert checks["database"]["ok"] and checks["workers"]["ok"] and checks["sandbox"]["ok"]
    assert took < ANSWER_WITHIN_SECONDS

    private_redis.start()
    wait_ready()


@pytest.mark.django_db(transaction=True)
def test_readyz_answers_within_the_timeout_while_redis_hangs(private_redis) -> None:
    beat()
    private_redis.popen.send_signal(signal.SIGSTOP)  # connections are accepted, never answered
    try:
        response, took = timed_readyz()
    finally:
        private_redis.popen.send_signal(signal.SIGCONT)

    assert response.status_code == 503
    assert response.json()["failing"] == REDIS_CHECKS
    assert checks_of(response)["redis_broker"]["detail"] == f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    assert took < ANSWER_WITHIN_SECONDS
    wait_ready()


# -- PostgreSQL --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_cluster():
    with PostgresCluster() as cluster:
        cluster.create_database("h_health")
        yield cluster


@pytest.fixture
def database_on(postgres_cluster, django_db_blocker):
    """The default connection swapped for one to the private cluster (its database has no tables:
    the database check needs none, the heartbeat checks then fail on the missing tables)."""
    if not postgres_cluster.running():
        postgres_cluster.start()
    from django.db.backends.postgresql.base import DatabaseWrapper

    original = connections["default"]
    wrapper = DatabaseWrapper(
        {
            **original.settings_dict,
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "127.0.0.1",
            "PORT": str(postgres_cluster.port),
            "NAME": "h_health",
            "USER": "postgres",
            "PASSWORD": "",
            "OPTIONS": {},
            "CONN_MAX_AGE": 0,
        },
        alias="default",
    )
    connections["default"] = wrapper
    try:
        with django_db_blocker.unblock():
            yield postgres_cluster
    finally:
        wrapper.close()
        connections["default"] = original
        if not postgres_cluster.running():
            postgres_cluster.start()


def database_check(timeout: float = 15) -> dict:
    """The database check once it passes (the cluster may still be starting)."""
    deadline = time.monotonic() + timeout
    while not (check := checks_of(readyz())["database"])["ok"]:
        assert time.monotonic() < deadline, check
        time.sleep(0.2)
    return check


def test_readyz_names_the_database_while_postgresql_is_down_and_recovers(database_on) -> None:
    assert database_check()["detail"] == "postgresql answers"

    database_on.stop(mode="fast")
    response, took = timed_readyz()

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json()["failing"][0] == "database"
    checks = checks_of(response)
    assert checks["database"]["detail"] == "OperationalError: connection refused"
    assert checks["workers"]["detail"] == "not checked: the database did not answer"
    assert checks["sandbox"]["detail"] == "not checked: the database did not answer"
    assert all(checks[name]["ok"] for name in REDIS_CHECKS), checks
    assert str(database_on.port) not in response.content.decode()
    assert took < ANSWER_WITHIN_SECONDS

    database_on.start()
    database_check()


def test_readyz_answers_within_the_timeout_while_postgresql_hangs(database_on) -> None:
    database_check()
    postmaster = int((database_on.data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGSTOP)  # the kernel accepts connections; nobody answers them
    try:
        response, took = timed_readyz()
    finally:
        os.kill(postmaster, signal.SIGCONT)

    assert response.status_code == 503
    checks = checks_of(response)
    assert checks["database"]["detail"] == f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    assert checks["workers"]["detail"] == "not checked: the database check has not answered"
    assert took < ANSWER_WITHIN_SECONDS
    database_check()


# -- a real worker ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_readyz_names_the_sandbox_when_a_real_worker_refuses_to_start_without_runsc(tmp_path: Path) -> None:
    beat("celery@alpha")  # another worker takes runs: only the sandbox check fails
    env = {
        **os.environ,
        "CRUCIBLE_DATABASE_URL": database_url_for_subprocesses(),
        "CRUCIBLE_REDIS_URL": django_settings.REDIS_URL,
        "CRUCIBLE_SANDBOX_ENGINE": "runsc",
        "CRUCIBLE_RUNSC_PATH": str(tmp_path / "no-runsc-here"),
    }
    argv = [str(VENV_BIN / "celery"), "-A", "crucible_site", "worker", "-n", "refuser@%h", "-Q", "health-test-nothing",
            "--concurrency", "1", "--without-gossip", "--without-mingle"]  # fmt: skip
    done = subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 78, done.stderr[-2000:]

    response = readyz()

    assert response.status_code == 503
    assert response.json()["failing"] == ["sandbox"]
    detail = checks_of(response)["sandbox"]["detail"]
    assert detail.startswith("1 worker(s) cannot start sandboxes; the latest said, "), detail
    assert "refused to start: runsc (gVisor) is not installed." in detail
