"""What the health tests share: heartbeats as workers write them, /readyz as a probe asks it."""

from __future__ import annotations

from datetime import timedelta

from django.test import Client
from django.utils import timezone

from evaluations.runs import lifecycle

READINESS_CHECKS = ["database", "redis_broker", "redis_channel_layer", "redis_cache", "workers", "sandbox"]
REDIS_CHECKS = ["redis_broker", "redis_channel_layer", "redis_cache"]


def beat(hostname: str = "celery@alpha", *, ago: float = 0.0, problem: str = "") -> None:
    """A heartbeat as a worker writes it (evaluations/runs/worker.py), `ago` seconds old."""
    at = timezone.now() - timedelta(seconds=ago)
    lifecycle.worker_heartbeat(hostname=hostname, started=at, concurrency=2, now=at, problem=problem)


def readyz():
    return Client().get("/readyz")


def checks_of(response) -> dict[str, dict]:
    return {check["name"]: check for check in response.json()["checks"]}


def redis_everywhere(settings, url: str) -> None:
    """Point the broker, the channel layer and the cache at `url` (pytest-django's `settings`)."""
    settings.CELERY_BROKER_URL = url
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": url}}
    layer = settings.CHANNEL_LAYERS["default"]
    host = {**layer["CONFIG"]["hosts"][0], "address": url}
    settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {**layer["CONFIG"], "hosts": [host]}}}
