"""Fixtures for the end-to-end tests: a real daphne + Celery worker (tests/support/stack.py) on the
test database pytest-django created, and users that exist in that database.

The processes read the rows the tests write, so every e2e test needs committed data:
`@pytest.mark.django_db(transaction=True)`. Nothing here mocks the sandbox: if runsc cannot run,
the worker refuses to start and the stack fixture fails with its log.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.quotas import give_generous_quotas
from tests.support.stack import Stack

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "error"})
RUN_TIMEOUT_SECONDS = 30.0

_serial = itertools.count(1)


def database_url_for_subprocesses() -> str:
    """The URL of the database this pytest process uses now (the test database, once set up)."""
    from django.db import connection

    sd = connection.settings_dict
    vendor = connection.vendor
    name = sd["NAME"]
    if vendor == "sqlite":
        name = str(name)
        if name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
            raise RuntimeError(
                f"the SQLite test database is in memory ({name!r}); other processes cannot open it. "
                "settings.py must give DATABASES['default']['TEST']['NAME'] a file path"
            )
        return f"sqlite:///{name}"  # an absolute path, so sqlite:////...
    if vendor == "postgresql":
        auth = quote(sd.get("USER") or "", safe="")
        if sd.get("PASSWORD"):
            auth += ":" + quote(sd["PASSWORD"], safe="")
        host = sd.get("HOST") or "127.0.0.1"
        port = f":{sd['PORT']}" if sd.get("PORT") else ""
        return f"postgres://{auth + '@' if auth else ''}{host}{port}/{quote(name, safe='')}"
    raise RuntimeError(f"e2e tests do not know how to hand a {vendor} database to other processes")


def redis_url() -> str:
    return os.environ.get("CRUCIBLE_REDIS_URL") or DEFAULT_REDIS_URL


@pytest.fixture(scope="module")
def stack_env(django_db_setup) -> dict[str, str]:
    """Environment for the processes: the test database, the tests' Redis, this process's paths."""
    from django.conf import settings

    return {
        "CRUCIBLE_DATABASE_URL": database_url_for_subprocesses(),
        "CRUCIBLE_REDIS_URL": redis_url(),
        "CRUCIBLE_VAR_DIR": str(settings.VAR_DIR),
        "CRUCIBLE_IMAGES_DIR": str(settings.CRUCIBLE_IMAGES_DIR),
        # The var dir's own, as this process's settings have it (CRUCIBLE_SANDBOX_STATE_DIR or <var>/sandboxes).
        "CRUCIBLE_SANDBOX_STATE_DIR": str(settings.CRUCIBLE_SANDBOX_STATE_DIR),
        "CRUCIBLE_SANDBOX_ENGINE": "runsc",
        "CRUCIBLE_PRODUCTION": "0",
        "CRUCIBLE_DEBUG": "0",
        # The tests poll the API every 0.1 s: no rate limit may slow them down.
        "CRUCIBLE_API_RATE": "off",
        "CRUCIBLE_API_WRITE_RATE": "off",
    }


@pytest.fixture(scope="module")
def stack(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    """daphne + Celery worker for one test module; logs in a pytest temp dir (named on failure)."""
    import redis

    # Tasks left in this Redis database by earlier sessions or other tests must not reach our worker.
    redis.Redis.from_url(stack_env["CRUCIBLE_REDIS_URL"], socket_connect_timeout=2).flushdb()
    log_dir = tmp_path_factory.mktemp("e2e-stack")
    with Stack(stack_env, log_dir=log_dir, concurrency=2) as running:
        yield running


@dataclass(frozen=True)
class E2EUser:
    username: str
    password: str
    token: str

    @property
    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


@pytest.fixture
def e2e_user(transactional_db) -> E2EUser:
    """A user with a password and an API token, committed so daphne sees it."""
    from django.contrib.auth import get_user_model

    from evaluations.accounts import tokens

    username = f"e2e{next(_serial)}-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(16)
    user = get_user_model().objects.create_user(username=username, password=password)
    give_generous_quotas(user)  # browser tests keep three runs in flight at once
    _row, key = tokens.token_create(user=user, name="e2e")
    return E2EUser(username=username, password=password, token=key)


@pytest.fixture
def wait_for_run(stack: Stack) -> Callable[..., dict[str, Any]]:
    """wait_for_run(session, run_id, headers) -> the run's API JSON once its status is terminal."""

    def _wait(session, run_id: int, headers: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT_SECONDS):
        deadline = time.monotonic() + timeout
        url = stack.url(f"/api/v1/runs/{run_id}/")
        while True:
            resp = session.get(url, headers=headers or {}, timeout=10)
            assert resp.status_code == 200, f"GET {url}: {resp.status_code} {resp.text[:500]}\n{stack.logs()}"
            data = resp.json()
            if data["status"] in TERMINAL:
                return data
            if time.monotonic() > deadline:
                pytest.fail(f"run {run_id} still {data['status']} after {timeout:g}s\n{stack.logs()}")
            time.sleep(0.1)

    return _wait
