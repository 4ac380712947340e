"""A worker whose var dir and metrics dir are not the web's (as on a host of its own, issue 14): the
web's /metrics still counts the sandbox starts of its runs, read from the rows they ended with."""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import E2EUser, e2e_user, stack_env  # noqa: F401 - fixtures
from tests.evaluations.monitoring.scraping import samples, total
from tests.evaluations.monitoring.test_metrics_add_up_over_two_workers import TERMINAL, admin_token  # noqa: F401
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

RUNS = 3
STARTS = "crucible_sandbox_start_seconds_count"


def test_the_web_counts_sandbox_starts_of_a_worker_that_shares_no_disk_with_it(
    stack_env: dict[str, str],  # noqa: F811
    e2e_user: E2EUser,  # noqa: F811
    admin_token: str,  # noqa: F811
    tmp_path,
) -> None:
    from evaluations.models import Run

    web_var = Path(tempfile.mkdtemp(prefix="crucible-web-var-", dir=tmp_path))
    # The test settings put every process in the session's var dir unless told another.
    web_env = {
        "CRUCIBLE_TEST_SESSION_VAR_DIR": str(web_var),
        "CRUCIBLE_VAR_DIR": str(web_var),
        "CRUCIBLE_METRICS_DIR": str(web_var / "metrics"),
    }
    worker_metrics = tmp_path / "worker-metrics"
    env = {**stack_env, "CRUCIBLE_METRICS_DIR": str(worker_metrics)}
    session = requests.Session()
    session.headers.update(e2e_user.api_headers)
    with Stack(env, log_dir=tmp_path / "logs", workers=1, concurrency=1, web_env=web_env) as stack:

        def scrape() -> dict:
            resp = requests.get(stack.url("/metrics"), headers={"Authorization": f"Token {admin_token}"}, timeout=10)
            assert resp.status_code == 200, resp.text
            return samples(resp.text)

        before = scrape()
        ids = []
        for i in range(RUNS):
            resp = session.post(stack.url("/api/v1/submissions/"), json={"code": f"print({i})"}, timeout=10)
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])
        deadline = time.monotonic() + 60
        while Run.objects.filter(pk__in=ids).exclude(status__in=TERMINAL).exists():
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.2)
        after = scrape()
        worker_group = f"{socket.gethostname()}-{stack.worker.pid}"  # metrics.py's dir of the worker's processes

    assert [r.status for r in Run.objects.filter(pk__in=ids)] == ["succeeded"] * RUNS, stack.logs()
    assert (worker_metrics / worker_group).is_dir()
    assert not (web_var / "metrics" / worker_group).exists()  # nothing the web reads of the worker's disk
    assert total(after, STARTS) - total(before, STARTS) == RUNS
    assert total(after, "crucible_sandbox_start_seconds_sum") > total(before, "crucible_sandbox_start_seconds_sum")
