"""SIGKILL of the Celery pool child running a run (the worker's main process lives on): the run
ends error/worker_lost with the output it printed before, is not run again, its sandbox goes, and
the same worker runs the next run to success."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.support import program

pytestmark = pytest.mark.faults

WALL = 5


def test_a_killed_pool_child_loses_its_run_and_the_worker_runs_the_next(faults):
    stack = faults.stack(workers=1, concurrency=1)
    code = program('import time\nprint("before the kill", flush=True)\ntime.sleep(60)\n')
    run_id = faults.api.submit(code, wall=WALL)
    faults.api.wait_output(run_id, "before the kill")
    sandbox_id = faults.sandbox_running(code)
    pool_pid, worker = faults.pool_child_running(stack, sandbox_id)

    os.kill(pool_pid, signal.SIGKILL)
    killed_at = time.monotonic()

    run = faults.api.wait(run_id, timeout=60)
    assert (run["status"], run["reason"], run["stdout"]) == ("error", "worker_lost", "before the kill\n"), run
    assert worker.running(), f"the worker's main process died with its pool child\n{faults.logs()}"

    next_id = faults.api.submit(program('print("next")\n'))
    following = faults.api.wait(next_id, timeout=60)
    assert (following["status"], following["stdout"]) == ("succeeded", "next\n"), following
    assert worker.running() and stack.live_workers() == [worker]

    faults.wait_no_leftovers(sandbox_id, deadline=killed_at + WALL + 10)
    assert len(faults.sandbox_starts()) == 2, "a run was executed twice (or a start was not logged)"
    faults.check_end_state()
