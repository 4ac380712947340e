"""Two workers with different node names on one broker share the runs, and each run's sandbox
starts exactly once (counted from the workers' own logs, not from task calls)."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

RUNS = 8
TERMINAL = {"succeeded", "failed", "error", "cancelled"}
SANDBOX_STARTED = re.compile(r"sandbox (crucible-runsc-[0-9a-f]+) started")


def test_two_workers_spread_the_runs_and_run_each_once(stack_env, e2e_user, tmp_path) -> None:
    import redis

    from evaluations.models import Run
    from evaluations.runs import logstore

    redis.Redis.from_url(stack_env["CRUCIBLE_REDIS_URL"], socket_connect_timeout=2).flushdb()
    session = requests.Session()
    session.headers.update(e2e_user.api_headers)
    with Stack(stack_env, log_dir=tmp_path, workers=2, concurrency=1, reconciler=True) as stack:
        ids = []
        for i in range(RUNS):
            code = f"import time\nprint('token-{i}')\ntime.sleep(0.5)\n"
            resp = session.post(stack.url("/api/v1/submissions/"), json={"code": code}, timeout=10)
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])
        deadline = time.monotonic() + 60
        while Run.objects.filter(pk__in=ids).exclude(status__in=TERMINAL).exists():
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.2)
        starts = {p.node: SANDBOX_STARTED.findall(p.log_path.read_text()) for p in stack.workers}

    runs = list(Run.objects.filter(pk__in=ids).order_by("pk"))
    assert [r.status for r in runs] == ["succeeded"] * RUNS, stack.logs()
    assert all(r.deliveries == 1 for r in runs)
    nodes = {r.worker.split(" pid ")[0] for r in runs}
    assert len(nodes) == 2, f"one worker took every run: {nodes}"
    assert sum(len(s) for s in starts.values()) == RUNS, starts
    assert all(starts.values()), f"a worker started no sandbox: {starts}"
    assert [logstore.log_read(r, "stdout") for r in runs] == [f"token-{i}\n".encode() for i in range(RUNS)]
