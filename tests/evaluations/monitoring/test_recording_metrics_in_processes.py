"""What the web's processes record for /metrics: request latency by route (never the raw path) and
open websockets."""

from __future__ import annotations

import pytest
from channels.generic.websocket import WebsocketConsumer
from channels.testing import WebsocketCommunicator

from evaluations.monitoring import metrics
from evaluations.monitoring.scrape import metrics_exposition
from evaluations.monitoring.websocket_metrics import counted
from tests.evaluations.monitoring.scraping import samples, total

REQUESTS = "crucible_http_request_duration_seconds_count"


def _scrape() -> dict:
    return samples(metrics_exposition().decode())


@pytest.mark.django_db
def test_requests_are_timed_by_their_route_pattern_not_their_path(client, make_run, user) -> None:
    runs = [make_run(user) for _ in range(2)]
    before = _scrape()

    for run in runs:
        assert client.get(f"/runs/{run.pk}/").status_code == 200
    assert client.get("/no/such/page/12345/").status_code == 404

    after = _scrape()
    route = {"route": "/runs/<int:run_id>/", "method": "GET", "status": "200"}
    assert total(after, REQUESTS, **route) - total(before, REQUESTS, **route) == 2
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    assert total(after, REQUESTS, **unmatched) - total(before, REQUESTS, **unmatched) == 1
    assert not any("12345" in str(labels) or f"/runs/{runs[0].pk}/" in str(labels) for _, labels in after)


@pytest.mark.django_db
def test_an_unknown_method_is_not_a_label_of_its_own(client) -> None:
    before = total(_scrape(), REQUESTS, method="other")

    client.generic("BREW", "/runs/")

    assert total(_scrape(), REQUESTS, method="other") - before == 1


class _Echo(WebsocketConsumer):
    def connect(self) -> None:
        self.accept()


@pytest.mark.asyncio
@pytest.mark.django_db  # channels closes stale database connections around every consumer event
async def test_a_websocket_counts_as_open_from_accept_to_disconnect() -> None:
    def open_now() -> float:
        return total(_recorded(), "crucible_websocket_connections", route="test_echo")

    socket = WebsocketCommunicator(counted("test_echo", _Echo.as_asgi()), "/ws/echo/")
    connected, _ = await socket.connect()
    assert connected
    assert open_now() == 1

    await socket.disconnect()
    assert open_now() == 0


def _recorded() -> dict:
    """What this host's processes recorded, without the database's part of /metrics."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(metrics.RecordedCollector())
    return samples(generate_latest(registry).decode())
