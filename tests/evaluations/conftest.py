import copy
import uuid

import pytest


@pytest.fixture(autouse=True)
def logs_in_a_temporary_dir(settings, tmp_path):
    """Each test's run output goes to its own log store, not var/logs."""
    settings.STORAGES = {
        **settings.STORAGES,
        "logs": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "logs")},
        },
    }


@pytest.fixture(autouse=True)
def no_rate_limits(settings):
    """API rate limits are off unless a test turns them on (tests/evaluations/test_rate_limiting.py):
    counts kept in the shared Redis must not throttle unrelated tests."""
    settings.CRUCIBLE_API_RATE = None
    settings.CRUCIBLE_API_WRITE_RATE = None


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
