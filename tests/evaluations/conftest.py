import copy
import uuid

import pytest


@pytest.fixture(autouse=True)
def no_rate_limits(settings):
    """API rate limits are off unless a test turns them on (tests/evaluations/test_rate_limiting.py):
    counts kept in the shared Redis must not throttle unrelated tests."""
    settings.CRUCIBLE_API_RATE = None
    settings.CRUCIBLE_API_WRITE_RATE = None


@pytest.fixture(autouse=True)
def login_failures_of_its_own(settings):
    """Failed logins are counted in the shared Redis (evaluations/accounts/login_limits.py), per
    username and per client address, which is 127.0.0.1 for every test: each test counts under a
    cache key prefix of its own, so failures from one never lock another out. (The keys expire with
    the lockout time.)"""
    caches = {name: dict(config) for name, config in settings.CACHES.items()}
    caches["default"]["KEY_PREFIX"] = f"crucible-test-{uuid.uuid4().hex[:12]}"
    settings.CACHES = caches


@pytest.fixture
def channel_layer_of_its_own(settings):
    """The configured RedisChannelLayer (same hosts, capacity, timeouts) under a unique key prefix,
    which it yields; its keys are deleted afterwards. (Not starting with "asgi": another session's
    flush of the default prefix must not reach it.)"""
    import redis

    prefix = f"crucible-wstest-{uuid.uuid4().hex[:12]}:"
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    assert layers["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    layers["default"]["CONFIG"]["prefix"] = prefix
    settings.CHANNEL_LAYERS = layers  # channels drops its cached layer on this setting_changed
    yield prefix
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def postgresql_in_ci() -> None:
    """For race tests: on PostgreSQL the row locks are what they are about; on SQLite they pass on its
    whole-database write lock, which proves nothing. Under CI, fail loudly rather than skip, so a CI
    that lost its database URL does not look green."""
    import os

    from django.db import connection

    if os.environ.get("CI") == "true" and connection.vendor != "postgresql":
        pytest.fail(f"CI=true but the database is {connection.vendor}: set CRUCIBLE_DATABASE_URL to PostgreSQL")


@pytest.fixture
def no_worker(monkeypatch) -> None:
    """Committed runs would send their task to the broker on commit: only the rows matter here."""
    from evaluations.runs import tasks

    monkeypatch.setattr(tasks.execute_run, "apply_async", lambda *args, **kwargs: None)
