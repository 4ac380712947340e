"""API rate limits: per token and per user (all of a user's tokens and browser sessions together), a
lower limit for writes, a clear 429 with Retry-After, counted in Redis so that every web process
shares the counts."""

from __future__ import annotations

import logging
import uuid
from types import SimpleNamespace

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from rest_framework.test import APIClient

from evaluations.api import throttling

RUNS = "/api/v1/runs/"
SUBMIT = "/api/v1/submissions/"
WINDOW_START = 1_800_000_000.0  # a whole number of minutes, hours and days


@pytest.fixture(autouse=True)
def cache_of_its_own(settings):
    """The configured Redis cache under a key prefix of this test's own; its keys deleted after."""
    prefix = f"crucible-throttle-test-{uuid.uuid4().hex[:12]}"
    caches = {name: dict(config) for name, config in settings.CACHES.items()}
    assert caches["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    caches["default"]["KEY_PREFIX"] = prefix
    settings.CACHES = caches
    yield prefix
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def clock(monkeypatch) -> dict[str, float]:
    """The throttles' time, 10 s into a minute unless a test moves it (no test straddles a window)."""
    now = {"t": WINDOW_START + 10}
    monkeypatch.setattr(throttling._WindowThrottle, "timer", staticmethod(lambda: now["t"]))
    return now


def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_over_the_limit_the_api_answers_429_with_retry_after(settings, clock, token) -> None:
    settings.CRUCIBLE_API_RATE = "3/min"
    client = api(token.key)

    statuses = [client.get(RUNS).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    refused = client.get(RUNS)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "50"  # the rest of the minute
    detail = refused.json()["detail"]
    assert "3 requests per minute per token" in detail
    assert "Retry-After" in detail and "50 seconds" in detail


def test_the_next_window_lets_the_caller_in_again(settings, clock, token) -> None:
    settings.CRUCIBLE_API_RATE = "1/min"
    client = api(token.key)
    assert [client.get(RUNS).status_code for _ in range(2)] == [200, 429]

    clock["t"] = WINDOW_START + 60

    assert client.get(RUNS).status_code == 200


def test_a_users_tokens_share_one_count_so_more_tokens_do_not_mean_more_requests(
    settings, clock, user, other_user, make_token
) -> None:
    settings.CRUCIBLE_API_RATE = "2/min"
    first, second = api(make_token(user, "a").key), api(make_token(user, "b").key)

    assert [first.get(RUNS).status_code for _ in range(2)] == [200, 200]
    refused = second.get(RUNS)  # a fresh token's own count is 1, but its user's is 3

    assert refused.status_code == 429
    assert refused["Retry-After"] == "50"
    assert "as many per user over all of their tokens and browser sessions" in refused.json()["detail"]
    assert api(make_token(other_user, "c").key).get(RUNS).status_code == 200  # someone else's count


def test_a_users_tokens_and_browser_sessions_share_one_count(settings, clock, user, make_token) -> None:
    settings.CRUCIBLE_API_RATE = "2/min"
    browser = Client()
    browser.force_login(user)

    assert [browser.get(RUNS).status_code for _ in range(2)] == [200, 200]
    assert api(make_token(user).key).get(RUNS).status_code == 429


def test_a_users_tokens_share_one_count_of_writes(settings, clock, user, make_token, counts) -> None:
    settings.CRUCIBLE_API_WRITE_RATE = "1/min"
    first, second = api(make_token(user, "a").key), api(make_token(user, "b").key)

    assert first.post(SUBMIT, {"code": "print(1)"}, format="json").status_code == 201
    assert second.post(SUBMIT, {"code": "print(1)"}, format="json").status_code == 429
    assert counts() == (1, 1)


def test_browser_sessions_are_counted_per_user(settings, clock, user, other_user) -> None:
    settings.CRUCIBLE_API_RATE = "2/min"
    alice, mallory = Client(), Client()
    alice.force_login(user)
    mallory.force_login(other_user)

    assert [alice.get(RUNS).status_code for _ in range(3)] == [200, 200, 429]
    assert mallory.get(RUNS).status_code == 200


def test_writes_have_a_lower_limit_of_their_own(settings, clock, token, counts) -> None:
    settings.CRUCIBLE_API_RATE = "100/min"
    settings.CRUCIBLE_API_WRITE_RATE = "2/min"
    client = api(token.key)

    statuses = [client.post(SUBMIT, {"code": "print(1)"}, format="json").status_code for _ in range(3)]

    assert statuses == [201, 201, 429]
    assert counts() == (2, 2)  # the refused submission stored nothing
    assert "2 requests per minute may be submissions" in client.post(SUBMIT, {}, format="json").json()["detail"]
    assert client.get(RUNS).status_code == 200  # reads still go through


def test_refused_requests_store_nothing_and_rerun_and_cancel_count_as_writes(
    settings, clock, token, make_run, counts
) -> None:
    settings.CRUCIBLE_API_WRITE_RATE = "1/min"
    run = make_run(token.user, status="succeeded")
    client = api(token.key)

    assert client.post(f"/api/v1/submissions/{run.submission_id}/runs/", {}, format="json").status_code == 201
    assert client.post(f"/api/v1/submissions/{run.submission_id}/runs/", {}, format="json").status_code == 429
    assert client.post(f"/api/v1/runs/{run.pk}/cancel/").status_code == 429
    assert counts() == (1, 2)


def test_the_counts_live_in_redis_where_every_process_sees_them(settings, clock, token, cache_of_its_own) -> None:
    settings.CRUCIBLE_API_RATE = "5/min"
    api(token.key).get(RUNS)

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
    keys = [k.decode() for k in client.scan_iter(match=f"{cache_of_its_own}:*")]
    assert any(f"throttle_api_token-{token.row.pk}:" in k for k in keys), keys
    assert any(f"throttle_api_user-{token.user.pk}:" in k for k in keys), keys
    key = next(k for k in keys if f"throttle_api_token-{token.row.pk}:" in k)
    # Another web process counting 4 more requests in the same window: this one is then refused.
    client.incrby(key, 4)
    client.close()

    assert api(token.key).get(RUNS).status_code == 429


@pytest.fixture
def cache_down(settings, monkeypatch) -> dict[str, float]:
    """The cache on a closed port (nothing listens there), no outage noted yet, and the
    throttles' monotonic clock, which a test may move on."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.5},
        }
    }
    monkeypatch.setattr(throttling, "_cache_down_until", {})
    now = {"t": 1000.0}
    monkeypatch.setattr(throttling, "time", SimpleNamespace(monotonic=lambda: now["t"]))
    return now


def outage_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == throttling.__name__ and r.levelno == logging.WARNING]


def test_a_cache_that_is_down_does_not_take_the_api_down(settings, token, cache_down, counts) -> None:
    settings.CRUCIBLE_API_RATE = "1/min"
    settings.CRUCIBLE_API_WRITE_RATE = "1/min"
    client = api(token.key)

    assert [client.get(RUNS).status_code for _ in range(3)] == [200, 200, 200]
    assert [client.post(SUBMIT, {"code": "print(1)"}, format="json").status_code for _ in range(2)] == [201, 201]
    assert counts() == (2, 2)


def test_a_cache_outage_is_logged_once_and_not_tried_again_for_a_few_seconds(
    settings, token, cache_down, caplog
) -> None:
    settings.CRUCIBLE_API_RATE = "1/min"
    client = api(token.key)

    with caplog.at_level(logging.INFO):
        statuses = [client.get(RUNS).status_code for _ in range(5)]
        cache_down["t"] += throttling.CACHE_RETRY_SECONDS - 0.1
        statuses.append(client.get(RUNS).status_code)

    assert statuses == [200] * 6
    [warning] = outage_warnings(caplog)
    assert warning.startswith("rate limiting is off for 5 s: the cache is unavailable (ConnectionError:")


def test_the_cache_is_tried_again_after_a_few_seconds(settings, token, cache_down, caplog) -> None:
    settings.CRUCIBLE_API_RATE = "1/min"
    client = api(token.key)

    with caplog.at_level(logging.INFO):
        assert client.get(RUNS).status_code == 200
        cache_down["t"] += throttling.CACHE_RETRY_SECONDS
        assert client.get(RUNS).status_code == 200

    assert len(outage_warnings(caplog)) == 2  # one per attempt: the second request did try the cache


def test_the_limits_are_off_when_the_setting_says_so(settings, clock, token) -> None:
    settings.CRUCIBLE_API_RATE = None
    client = api(token.key)

    assert {client.get(RUNS).status_code for _ in range(30)} == {200}


@pytest.mark.parametrize("raw", ["120", "120 per minute", "x/min", "120/fortnight", "-1/min"])
def test_a_malformed_rate_setting_refuses_to_start(monkeypatch, raw) -> None:
    from crucible_site.settings import _rate

    monkeypatch.setenv("CRUCIBLE_API_RATE", raw)

    with pytest.raises(ImproperlyConfigured, match="CRUCIBLE_API_RATE must look like 120/min"):
        _rate("CRUCIBLE_API_RATE", "120/min")


@pytest.mark.parametrize(("raw", "rate"), [("10/s", "10/s"), ("1000/Hour", "1000/hour"), ("off", None)])
def test_rate_settings_read_from_the_environment(monkeypatch, raw, rate) -> None:
    from crucible_site.settings import _rate

    monkeypatch.setenv("CRUCIBLE_API_RATE", raw)

    assert _rate("CRUCIBLE_API_RATE", "120/min") == rate


# -- requests without a valid token ---------------------------------------------------------------------


def test_a_flood_of_bad_tokens_is_counted_per_client_address_and_gets_429(settings, clock, token) -> None:
    settings.CRUCIBLE_API_RATE = "3/min"
    flood = APIClient(REMOTE_ADDR="198.51.100.7")
    flood.credentials(HTTP_AUTHORIZATION="Token cru_not-a-real-key")

    statuses = [flood.get(RUNS).status_code for _ in range(5)]

    # Before: 401 for ever (DRF authenticates before it throttles, so these were never counted).
    assert statuses == [401, 401, 401, 429, 429]
    refused = flood.get(RUNS)
    assert refused["Retry-After"] == "50"
    assert "Requests without a valid token count per client address" in refused.json()["detail"]
    # Other addresses have counts of their own, and a valid token from the same address its own too.
    assert APIClient(REMOTE_ADDR="198.51.100.8").get(RUNS).status_code == 401
    good = APIClient(REMOTE_ADDR="198.51.100.7")
    good.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert good.get(RUNS).status_code == 200


def test_requests_without_a_token_share_the_address_count_with_bad_tokens(settings, clock, db) -> None:
    settings.CRUCIBLE_API_RATE = "4/min"
    settings.CRUCIBLE_API_WRITE_RATE = "2/min"
    bad = APIClient(REMOTE_ADDR="198.51.100.9")
    bad.credentials(HTTP_AUTHORIZATION="Token cru_not-a-real-key")
    nobody = APIClient(REMOTE_ADDR="198.51.100.9")

    assert [bad.get(RUNS).status_code, nobody.get(RUNS).status_code] == [401, 401]
    # Writes without a valid token also count against the lower write limit.
    assert [nobody.post(SUBMIT, {"code": "print(1)"}, format="json").status_code for _ in range(3)] == [401, 401, 429]
    assert nobody.get(RUNS).status_code == 429  # the address's 5th request of the minute
