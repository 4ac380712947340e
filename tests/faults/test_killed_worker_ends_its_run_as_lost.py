"""SIGKILL of a whole worker (its process group: the main process and its pool children) mid-run,
with no worker started in its place: the run ends error/worker_lost with the output it printed
before the kill, without being run again — within 60 s while another worker lives, or within 60 s
of a worker starting again when none did — and nothing of its sandbox (processes, cgroup, work
dir) is left once its wall time + 10 s have passed, even with no worker running."""

from __future__ import annotations

import time

import pytest

from tests.faults.support import program

pytestmark = pytest.mark.faults

WALL = 5
CODE_BODY = 'import time\nprint("before the kill", flush=True)\ntime.sleep(60)\nprint("never")\n'


def assert_lost_with_its_output(run: dict) -> None:
    assert (run["status"], run["reason"]) == ("error", "worker_lost"), run
    assert run["stdout"] == "before the kill\n", run


def kill_the_worker_mid_run(faults, stack):
    """Submit a run, SIGKILL the worker running it once it has printed; the run's id, its sandbox,
    the worker killed and when."""
    code = program(CODE_BODY)
    run_id = faults.api.submit(code, wall=WALL)
    faults.api.wait_output(run_id, "before the kill")
    sandbox_id = faults.sandbox_running(code)
    _, worker = faults.pool_child_running(stack, sandbox_id)
    stack.kill(worker)
    return run_id, sandbox_id, worker, time.monotonic()


def test_the_run_of_a_killed_worker_ends_lost_while_another_worker_lives(faults):
    stack = faults.stack(workers=2)
    run_id, sandbox_id, worker, killed_at = kill_the_worker_mid_run(faults, stack)

    run = faults.api.wait(run_id, timeout=60)
    assert_lost_with_its_output(run)
    faults.wait_no_leftovers(sandbox_id, deadline=killed_at + WALL + 10)
    assert len(stack.live_workers()) == 1, "the other worker died too"
    assert faults.sandbox_starts() == [sandbox_id]
    faults.check_end_state()


def test_the_run_of_a_killed_worker_ends_lost_once_a_worker_starts_again(faults):
    stack = faults.stack(workers=1)
    run_id, sandbox_id, worker, killed_at = kill_the_worker_mid_run(faults, stack)

    # No worker at all: the sandbox must still go once its wall time is over.
    faults.wait_no_leftovers(sandbox_id, deadline=killed_at + WALL + 10)
    assert not stack.live_workers()

    stack.restart_worker(worker)
    run = faults.api.wait(run_id, timeout=60)
    assert_lost_with_its_output(run)
    assert faults.sandbox_starts() == [sandbox_id]
    faults.check_end_state()
