"""Redis (broker, channel layer, cache; no persistence) restarted with runs running and queued:
every run still runs exactly once to the end (one sandbox start per run), and a websocket that
followed a run before the restart gets the rest of its output and its final status, reconnecting
with its offsets (docs/live-runs.md) if the server closed it."""

from __future__ import annotations

import pytest

from tests.faults.support import program

pytestmark = pytest.mark.faults

COUNT_SLOWLY = 'import time\nfor i in range({n}):\n    print(f"line {{i}}", flush=True)\n    time.sleep(0.4)\n'


def expected(n: int) -> str:
    return "".join(f"line {i}\n" for i in range(n))


def test_runs_running_and_queued_all_finish_once_after_redis_restarts(faults):
    faults.stack(workers=1, concurrency=2)
    followed = faults.api.submit(program(COUNT_SLOWLY.format(n=14)), wall=10)
    running = faults.api.submit(program(COUNT_SLOWLY.format(n=8)), wall=10)
    queued = [faults.api.submit(program(COUNT_SLOWLY.format(n=3)), wall=10) for _ in range(2)]
    faults.api.wait_output(followed, "line 1")
    faults.api.wait_output(running, "line 1")
    for run_id in queued:
        assert faults.api.run(run_id)["status"] == "queued"

    follower = faults.follow(followed)
    faults.api.wait(followed, lambda run: len(follower.output["stdout"]) > 0, timeout=10, what="the socket got nothing")

    faults.redis.restart(down_seconds=1)

    lines = {followed: 14, running: 8, queued[0]: 3, queued[1]: 3}
    for run_id, n in lines.items():
        run = faults.api.wait(run_id, timeout=60)
        assert (run["status"], run["stdout"]) == ("succeeded", expected(n)), (run, faults.logs())
    follower.join(timeout=10)
    print(f"websocket: {follower.connections} connection(s), closes: {follower.closes}")
    assert follower.final is not None, f"the websocket got no final status: {follower}\n{faults.logs()}"
    assert follower.final["status"] == "succeeded", follower.final
    assert follower.output["stdout"].decode() == expected(14), follower
    assert not follower.problems, follower.problems
    assert len(faults.sandbox_starts()) == len(lines), f"sandbox starts: {faults.sandbox_starts()}"
    faults.check_end_state()
