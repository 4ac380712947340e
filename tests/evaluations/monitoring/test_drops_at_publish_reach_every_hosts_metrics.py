"""Live messages the channel layer refuses are counted in Redis, so /metrics on any host shows the
drops of every process, wherever it runs; with Redis down too, the process counts them in its own
files (only its host's /metrics sees those)."""

from __future__ import annotations

import pytest
import redis

from evaluations.live import publisher
from evaluations.live.groups import run_group
from evaluations.monitoring import metrics
from evaluations.monitoring.scrape import metrics_exposition
from tests.evaluations.monitoring.scraping import samples, total

pytestmark = pytest.mark.django_db

NOBODY_LISTENS = "redis://127.0.0.1:1/0"
DROPPED = "crucible_websocket_messages_dropped_total"


def _layer_at(url: str) -> dict:
    return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}}


def _dropped(stage: str) -> float:
    return total(samples(metrics_exposition().decode()), DROPPED, stage=stage)


def test_messages_the_channel_layer_refuses_are_counted_in_redis(settings) -> None:
    before, before_local = _dropped("publish"), _dropped("publish_local")
    in_redis = redis.Redis.from_url(settings.REDIS_URL)
    counted = int(in_redis.get(metrics.DROPPED_AT_PUBLISH_KEY) or 0)

    settings.CHANNEL_LAYERS = _layer_at(NOBODY_LISTENS)
    publisher.send([(run_group(1), {"type": "run.status"}), (run_group(1), {"type": "run.status"})])

    assert int(in_redis.get(metrics.DROPPED_AT_PUBLISH_KEY)) - counted == 2
    assert _dropped("publish") - before == 2
    assert _dropped("publish_local") == before_local


def test_a_drop_that_redis_cannot_count_is_counted_by_the_process(settings) -> None:
    before = _dropped("publish_local")

    settings.CHANNEL_LAYERS = _layer_at(NOBODY_LISTENS)
    settings.REDIS_URL = NOBODY_LISTENS
    publisher.send([(run_group(1), {"type": "run.status"})])
    after = _dropped("publish_local")

    assert after - before == 1
