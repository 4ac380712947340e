"""/metrics on a real stack with two workers of two pool processes each: after real runs, the run
counters and every histogram's count grew by exactly the runs made, the sandbox starts of several
worker processes included, and the web's open websockets are counted."""

from __future__ import annotations

import time

import pytest
import requests

from tests.e2e.conftest import E2EUser, e2e_user, stack_env  # noqa: F401 - fixtures
from tests.evaluations.monitoring.scraping import samples, total
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

RUNS = 8
TERMINAL = {"succeeded", "failed", "error", "cancelled"}


@pytest.fixture
def admin_token(transactional_db) -> str:
    from django.contrib.auth import get_user_model

    from evaluations.accounts import services as account_services
    from evaluations.accounts import tokens
    from evaluations.models import Role

    admin = get_user_model().objects.create_user(username="metrics-e2e-admin", password="not-used-here-7")
    account_services.user_set_role(actor=None, user=admin, role=Role.ADMIN)
    return tokens.token_create(user=admin, name="prometheus")[1]


def test_run_counters_and_histograms_add_up_over_two_workers(
    stack_env: dict[str, str],  # noqa: F811
    e2e_user: E2EUser,  # noqa: F811
    admin_token: str,
    tmp_path,
) -> None:
    import redis
    from websockets.sync.client import connect

    from evaluations.models import Run

    redis.Redis.from_url(stack_env["CRUCIBLE_REDIS_URL"], socket_connect_timeout=2).flushdb()
    session = requests.Session()
    session.headers.update(e2e_user.api_headers)
    with Stack(stack_env, log_dir=tmp_path, workers=2, concurrency=2, reconciler=True) as stack:

        def scrape() -> dict:
            resp = requests.get(stack.url("/metrics"), headers={"Authorization": f"Token {admin_token}"}, timeout=10)
            assert resp.status_code == 200, resp.text
            return samples(resp.text)

        before = scrape()
        ids = []
        for i in range(RUNS):
            code = f"import time\nprint('run {i}')\ntime.sleep(0.3)\n"
            resp = session.post(stack.url("/api/v1/submissions/"), json={"code": code}, timeout=10)
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])
        deadline = time.monotonic() + 90
        while Run.objects.filter(pk__in=ids).exclude(status__in=TERMINAL).exists():
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.2)

        ws_url = stack.base_url.replace("http://", "ws://") + "/ws/runs/"
        with connect(ws_url, additional_headers=e2e_user.api_headers, open_timeout=5, close_timeout=1):
            with_socket = scrape()
        # The server counts the close once it has handled it, which a busy machine may do after our
        # next request: wait a little for it (a socket never uncounted still fails below).
        after = scrape()
        deadline = time.monotonic() + 5
        while total(after, "crucible_websocket_connections", route="run_list") and time.monotonic() < deadline:
            time.sleep(0.1)
            after = scrape()
        nodes = {p.node.split("@")[0] for p in stack.workers}

    runs = list(Run.objects.filter(pk__in=ids))
    assert [r.status for r in runs] == ["succeeded"] * RUNS, stack.logs()
    processes = {r.worker for r in runs}  # "<node> pid <pid>": one per pool process
    assert len(processes) >= 2, f"one process ran every run: {processes}"

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("crucible_runs_finished_total", status="succeeded", reason="none") == RUNS
    assert grew("crucible_runs_finished_total") == RUNS
    assert grew("crucible_run_duration_seconds_count") == RUNS
    assert grew("crucible_run_duration_seconds_bucket", le="+Inf") == RUNS
    assert grew("crucible_run_queue_wait_seconds_count") == RUNS
    # Measured by the pool processes, stored with each run's end, read from the rows.
    assert grew("crucible_sandbox_start_seconds_count") == RUNS, (processes, stack.logs())
    assert grew("crucible_sandbox_start_seconds_sum") > 0
    submitted = {"route": "/api/v1/submissions/", "method": "POST", "status": "201"}
    assert grew("crucible_http_request_duration_seconds_count", **submitted) == RUNS

    assert total(after, "crucible_runs_queued") == 0
    assert total(after, "crucible_runs_in_flight") == 0
    for node in nodes:
        beats = [
            v
            for (name, labels), v in after.items()
            if name == "crucible_worker_heartbeat_age_seconds" and dict(labels)["worker"].startswith(node)
        ]
        assert beats and all(age < 30 for age in beats), (node, beats)
    assert total(with_socket, "crucible_websocket_connections", route="run_list") == 1
    assert total(after, "crucible_websocket_connections", route="run_list") == 0
