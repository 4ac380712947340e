"""A poison run: every time its sandbox starts, its worker dies (the test SIGKILLs the worker's
process group then, and starts the worker again). The run ends error after a bounded number of
deliveries (≤ 3; the lifecycle ends it worker_lost after the first), and a run queued behind it on
the same single-slot worker succeeds."""

from __future__ import annotations

import time

import pytest

from tests.faults.support import TERMINAL, program

pytestmark = pytest.mark.faults

MAX_DELIVERIES = 3


def test_a_run_that_kills_its_worker_each_time_ends_and_the_queue_moves_on(faults):
    stack = faults.stack(workers=1, concurrency=1)
    poison = program('import time\nprint("poison", flush=True)\ntime.sleep(60)\n')
    poison_id = faults.api.submit(poison, wall=5)
    behind_id = faults.api.submit(program('print("behind")\n'))

    kills: list[str] = []  # the poison's sandboxes, one per start
    deadline = time.monotonic() + 120
    while faults.api.run(poison_id)["status"] not in TERMINAL:
        assert time.monotonic() < deadline, f"poison run not ended after {len(kills)} kills\n{faults.logs()}"
        assert len(kills) <= MAX_DELIVERIES, f"the poison run started {len(kills) + 1} times\n{faults.logs()}"
        try:
            sandbox_id = faults.sandbox_running(poison, timeout=2, known=set(kills))
        except AssertionError:
            continue  # not started (again) yet: look at its status again
        _, worker = faults.pool_child_running(stack, sandbox_id)
        stack.kill(worker)
        kills.append(sandbox_id)
        stack.restart_worker(worker)

    run = faults.api.run(poison_id)
    assert (run["status"], run["reason"]) == ("error", "worker_lost"), run
    assert 1 <= faults.run_row(poison_id)["deliveries"] <= MAX_DELIVERIES, faults.run_row(poison_id)
    behind = faults.api.wait(behind_id, timeout=60)
    assert (behind["status"], behind["stdout"]) == ("succeeded", "behind\n"), behind
    assert len(faults.sandbox_starts()) == len(kills) + 1, f"{faults.sandbox_starts()} for poison starts {kills}"
    faults.check_end_state()
