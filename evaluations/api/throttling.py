"""API rate limits, per token and per user over all their tokens and sessions, counted in the shared
cache (Redis) with a fixed window and an atomic increment (DRF's stock throttle loses counts under
concurrency). Requests without a valid token count per client address; browser form submissions and
websocket connects count in their user's buckets too. Rates are read from settings on every request;
over a limit: 429 with Retry-After.
"""

from __future__ import annotations

import functools
import logging
import math
import time

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS
from django.shortcuts import render
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

from evaluations.accounts.audit import client_ip
from evaluations.models import ApiToken

logger = logging.getLogger(__name__)

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# After the cache failed, how long requests go uncounted before it is tried again (and so how often,
# at most, its outage is logged).
CACHE_RETRY_SECONDS = 5.0
# The cache's location -> time.monotonic() until which it is taken to be down.
_cache_down_until: dict[str, float] = {}


def _cache_location() -> str:
    return str(settings.CACHES[DEFAULT_CACHE_ALIAS].get("LOCATION", ""))


class _WindowThrottle(SimpleRateThrottle):
    setting = ""

    def get_rate(self) -> str | None:
        return getattr(settings, self.setting)

    def get_cache_key(self, request, view) -> str | None:
        if isinstance(request.auth, ApiToken):
            ident = f"token-{request.auth.pk}"
        elif request.user is not None and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"ip-{client_ip(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def get_cache_keys(self, request, view) -> list[str]:
        """The buckets a request counts in: its own (token, session user or address) and, for a
        token, its user's too, which the user's other tokens and sessions fill as well."""
        key = self.get_cache_key(request, view)
        if key is None:
            return []
        keys = [key]
        if isinstance(request.auth, ApiToken):
            keys.append(self.key_for(f"user-{request.auth.user_id}"))
        return keys

    def allow_request(self, request, view) -> bool:
        request.crucible_throttles_counted = True
        return self.allow_keys(self.get_cache_keys(request, view))

    def key_for(self, ident: str) -> str:
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_keys(self, keys: list[str]) -> bool:
        """Count one request in each bucket of `keys`; False if any is then over the rate."""
        if self.rate is None or not keys:
            return True
        # A limiter that is down must not take the API down with it: requests pass uncounted, and
        # for a while do not even try the cache, whose every attempt could wait out a timeout.
        if time.monotonic() < _cache_down_until.get(_cache_location(), 0.0):
            return True
        now = self.timer()
        window = int(now // self.duration)
        self.until_next_window = (window + 1) * self.duration - now
        try:
            # Every bucket counts the request, refused or not, as a single bucket always did.
            counts = [self._count(f"{key}:{window}") for key in keys]
        except (RedisError, OSError) as exc:
            _cache_down_until[_cache_location()] = time.monotonic() + CACHE_RETRY_SECONDS
            logger.warning(
                "rate limiting is off for %g s: the cache is unavailable (%s: %s)",
                CACHE_RETRY_SECONDS,
                type(exc).__name__,
                exc,
            )
            return True
        return max(counts) <= self.num_requests

    def _count(self, key: str) -> int:
        self.cache.add(key, 0, timeout=self.duration + 1)
        try:
            return self.cache.incr(key)
        except ValueError:  # expired between add and incr
            self.cache.set(key, 1, timeout=self.duration + 1)
            return 1

    def wait(self) -> float | None:
        return getattr(self, "until_next_window", None)


class ApiRateThrottle(_WindowThrottle):
    """Every API request."""

    scope = "api"
    setting = "CRUCIBLE_API_RATE"


class ApiWriteRateThrottle(_WindowThrottle):
    """Requests that change something (submissions, re-runs, cancels): a lower rate."""

    scope = "api-write"
    setting = "CRUCIBLE_API_WRITE_RATE"

    def get_cache_key(self, request, view) -> str | None:
        if request.method in SAFE_METHODS:
            return None
        return super().get_cache_key(request, view)


def throttle_unauthenticated(request, view) -> float | None:
    """Count a request refused for a missing or bad token in its view's buckets, per client address,
    as DRF never does (it authenticates before it throttles); the seconds to wait if that puts it over
    a limit, else None. A flood of bad tokens then gets 429s like any other."""
    if view is None or getattr(request, "crucible_throttles_counted", False):
        return None
    waits = [throttle.wait() or 0.0 for throttle in view.get_throttles() if not throttle.allow_request(request, view)]
    return max(waits) if waits else None


def user_action_wait(*, user_id: int, token_id: int | None = None, write: bool) -> float | None:
    """Count one browser form submission (`write`) or websocket connect of a user, in the buckets
    their API requests fill (the user's, and the token's for a socket opened with one); the seconds
    to wait if that puts it over a limit, else None."""
    waits = []
    for throttle in (ApiRateThrottle(), ApiWriteRateThrottle()) if write else (ApiRateThrottle(),):
        idents = ([f"token-{token_id}"] if token_id is not None else []) + [f"user-{user_id}"]
        if not throttle.allow_keys([throttle.key_for(ident) for ident in idents]):
            waits.append(throttle.wait() or 0.0)
    return max(waits) if waits else None


def rate_limited(view):
    """For browser views that change something: a POST counts as a write, as in the API; over a
    limit the page answers 429 with Retry-After and the view does not run."""

    @functools.wraps(view)
    def limited(request, *args, **kwargs):
        if request.method == "POST" and request.user.is_authenticated:
            wait = user_action_wait(user_id=request.user.pk, write=True)
            if wait is not None:
                return _rate_limited_page(request, wait)
        return view(request, *args, **kwargs)

    return limited


def _rate_limited_page(request, wait: float):
    seconds = max(1, math.ceil(wait))
    message = (
        f"Too many requests: you may make {_describe(settings.CRUCIBLE_API_WRITE_RATE)} that submit, re-run, "
        f"cancel or create a token, and {_describe(settings.CRUCIBLE_API_RATE)} in all, counting your API "
        f"requests. Try again in {seconds} seconds."
    )
    context = {"title": "Too many requests", "message": message}
    response = render(request, "error.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response


def throttled_message() -> str:
    """What a 429 says (DRF appends when to retry; Retry-After has it in seconds)."""
    return (
        "Too many requests: the API allows "
        f"{_describe(settings.CRUCIBLE_API_RATE)} per token, and as many per user over all of their tokens "
        f"and browser sessions together, of which {_describe(settings.CRUCIBLE_API_WRITE_RATE)} may be "
        "submissions, re-runs or cancels. Requests without a valid token count per client address. "
        "Wait for the time in the Retry-After header."
    )


def _describe(rate: str | None) -> str:
    if rate is None:
        return "unlimited requests"
    num, period = rate.split("/")
    unit = {"s": "second", "m": "minute", "h": "hour", "d": "day"}[period[0]]
    return f"{num} requests per {unit}"
