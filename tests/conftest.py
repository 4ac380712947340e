"""Shared fixtures for the Django-side tests: users, authenticated clients and row factories.

Factories are plain functions behind fixtures (`make_user`, `make_run`), so each test states the
rows it needs. Django imports stay inside the fixtures: tests/sandbox/ must not need Django.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.quotas import GENEROUS_QUOTAS

PASSWORD = "correct horse battery staple"
HELLO = "print('hello')\n"

_serial = itertools.count(1)
_password_hashes: dict[tuple[str, str], str] = {}


def _password_hash(password: str) -> str:
    # The real hasher costs ~0.5 s a call; hash each distinct password once per session. Keyed by
    # the hasher too: a test module that switches to a fast hasher must not leave its hashes to
    # modules that cannot check them.
    from django.conf import settings
    from django.contrib.auth.hashers import make_password

    key = (settings.PASSWORD_HASHERS[0], password)
    if key not in _password_hashes:
        _password_hashes[key] = make_password(password)
    return _password_hashes[key]


@pytest.fixture(autouse=True)
def _close_the_worker_engines():
    """Tests that run code in this process (execution.run_in_sandbox) use the worker's cached engine,
    whose warm launcher (sandbox/launcher.py) would otherwise sit in the shared sandbox state dir
    until the session ends, where the end-to-end tests look for leftovers."""
    yield
    engines = sys.modules.get("evaluations.runs.engines")
    if engines is not None:
        engines.close_engines()


@pytest.fixture
def make_user(db) -> Callable[..., Any]:
    """make_user(username, password=..., quotas=..., <User fields>). Users get GENEROUS_QUOTAS as a
    per-user override (tests submit more at once than a researcher's default 2 concurrent runs);
    quotas={...} gives another override, quotas=None none at all (the role's defaults apply)."""
    from django.contrib.auth import get_user_model

    from evaluations.models import QuotaOverride

    def _make_user(
        username: str | None = None,
        *,
        password: str = PASSWORD,
        quotas: dict[str, Any] | None = GENEROUS_QUOTAS,
        **fields: Any,
    ):
        username = username or f"user{next(_serial)}"
        user = get_user_model().objects.create(
            username=username, email=f"{username}@example.invalid", password=_password_hash(password), **fields
        )
        if quotas is not None:
            QuotaOverride.objects.create(user=user, **quotas)
        return user

    return _make_user


@pytest.fixture
def password() -> str:
    """The password every make_user user has unless told otherwise."""
    return PASSWORD


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def other_user(make_user):
    return make_user("mallory")


@dataclass(frozen=True)
class IssuedToken:
    """An API token as its owner has it: the stored row, and the key shown once at creation."""

    row: Any  # evaluations.models.ApiToken
    key: str

    @property
    def user(self):
        return self.row.user


@pytest.fixture
def make_token(db) -> Callable[..., IssuedToken]:
    """make_token(user, name="test") -> IssuedToken, made the way the profile page makes them."""
    from evaluations.accounts import tokens

    def _make_token(user, name: str = "test") -> IssuedToken:
        row, key = tokens.token_create(user=user, name=name)
        return IssuedToken(row=row, key=key)

    return _make_token


@pytest.fixture
def token(user, make_token) -> IssuedToken:
    return make_token(user)


@pytest.fixture
def api_client(token):
    """A DRF client authenticated the way API users are: `Authorization: Token <key>`."""
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return api


@pytest.fixture
def anonymous_api_client(db):
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def client(user):
    """The Django test client, logged in as `user` (overrides pytest-django's anonymous one)."""
    from django.test import Client

    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def anonymous_client(db):
    from django.test import Client

    return Client()


@pytest.fixture
def make_run(db) -> Callable[..., Any]:
    """Create a Submission and one Run straight in the database, in any state.

    make_run(owner, code=..., name=..., status=..., <any Run field>). It does not go through
    services, so no task is queued; use services.submission_create to test that path.
    """
    from evaluations.models import Run, Submission
    from evaluations.runs import validation

    def _make_run(owner, *, code: str = HELLO, name: str = "hello", stdout: bytes = b"", stderr: bytes = b"", **fields):
        from evaluations.runs.logstore import RunLogWriter

        submission = Submission.objects.create(owner=owner, name=name, code=code)
        limits = validation.limits_build(wall_seconds=None, memory_mb=None)
        values: dict[str, Any] = dict(
            wall_seconds=limits.wall_seconds,
            memory_bytes=limits.memory_bytes,
            stdout_limit_bytes=limits.stdout_bytes,
            stderr_limit_bytes=limits.stderr_bytes,
        )
        values.update(fields)
        run = Run.objects.create(submission=submission, **values)
        if stdout or stderr:  # output lives in the log store, as a worker would have written it
            writer = RunLogWriter(run)
            writer.append("stdout", 0, stdout)
            writer.append("stderr", 0, stderr)
            writer.close()
        return run

    return _make_run


@pytest.fixture
def counts(db) -> Callable[[], tuple[int, int]]:
    """counts() -> (submissions, runs): compare before/after to prove nothing was created."""
    from evaluations.models import Run, Submission

    return lambda: (Submission.objects.count(), Run.objects.count())
