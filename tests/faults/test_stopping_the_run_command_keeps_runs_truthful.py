"""`make run`'s command (scripts/run.sh) stopped with runs running and queued — by Ctrl-C (SIGINT
to its process group, as a terminal sends it) or by SIGTERM to the command — stops everything it
started: a running run that can finish within the grace (CRUCIBLE_STOP_GRACE_SECONDS) succeeds,
one that cannot ends error/worker_lost saying the worker was stopped (output kept), a queued run
stays queued. Started again, the queued run runs to completion and the user (3 concurrent runs
allowed) can still submit."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time

import pytest

from tests.faults.conftest import STOP_GRACE_SECONDS
from tests.faults.support import program
from tests.support import sandboxes
from tests.support.stack import REPO_ROOT, child_env, log_tail

pytestmark = pytest.mark.faults


class RunCommand:
    """scripts/run.sh in a session of its own, output to `log_path`."""

    def __init__(self, env, log_path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.offset = log_path.stat().st_size
        self.popen = subprocess.Popen(
            [str(REPO_ROOT / "scripts" / "run.sh")],
            cwd=REPO_ROOT,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started: set[int] = set()  # every process seen below it

    def tree(self) -> list[sandboxes.ProcInfo]:
        below = sandboxes.descendants(self.popen.pid)
        self.started |= {p.pid for p in below}
        return below

    def wait_up(self, api, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.popen.poll() is None, f"run.sh exited with {self.popen.returncode}\n{log_tail(self.log_path)}"
            self.tree()
            with open(self.log_path, "rb") as f:
                f.seek(self.offset)
                worker_ready = b" ready." in f.read()
            with contextlib.suppress(OSError):
                if worker_ready and api.get("/login/", timeout=2).status_code < 500:
                    return
            time.sleep(0.2)
        raise AssertionError(f"run.sh did not come up in {timeout:g}s\n{log_tail(self.log_path)}")

    def left(self) -> list[str]:
        alive = [sandboxes.proc_info(pid) for pid in self.started]
        return [f"{p.pid}: {p.cmdline[:150]}" for p in alive if p is not None and p.state != "Z"]

    def wait_stopped(self, timeout: float) -> list[str]:
        """Wait until run.sh and every process ever seen below it are gone; what is left at `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.popen.poll()
            if self.popen.returncode is not None and not self.left():
                return []
            time.sleep(0.2)
        return self.left()

    def kill(self) -> None:
        """Teardown: SIGKILL whatever is left of it."""
        self.tree()
        for pid in [self.popen.pid, *self.started]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._log.close()


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_stopping_the_run_command_ends_running_runs_truthfully_and_keeps_queued_ones(faults, stop):
    env = {**faults.env, "CRUCIBLE_HOST": "127.0.0.1", "CRUCIBLE_PORT": str(faults.port), "CRUCIBLE_WORKERS": "2"}
    api = faults.api_for("quota3")
    log_path = faults.log_dir / "run.log"
    faults.log_dir.mkdir(exist_ok=True)
    first = RunCommand(env, log_path)
    faults.cleanup(first.kill)
    first.wait_up(api)

    cut = api.submit(program('import time\nprint("cut-start", flush=True)\ntime.sleep(8)\nprint("cut-end")\n'), wall=10)
    fits = api.submit(program('import time\nprint("fits-start", flush=True)\ntime.sleep(1)\nprint("fits-end")\n'))
    queued = api.submit(program('print("queued")\n'))
    api.wait_output(cut, "cut-start")
    api.wait_output(fits, "fits-start")
    assert api.run(queued)["status"] == "queued"

    first.tree()
    if stop == "ctrl-c":
        os.killpg(first.popen.pid, signal.SIGINT)
    else:
        os.kill(first.popen.pid, signal.SIGTERM)
    left = first.wait_stopped(timeout=STOP_GRACE_SECONDS + 20)
    assert not left, f"still running after the {stop}: {left}\n{log_tail(log_path)}"

    rows = {row["id"]: row for row in faults.sql("SELECT id, status, reason, detail FROM evaluations_run")}
    assert rows[fits]["status"] == "succeeded", rows[fits]
    assert (rows[cut]["status"], rows[cut]["reason"]) == ("error", "worker_lost"), rows[cut]
    assert re.search(r"stop", rows[cut]["detail"], re.IGNORECASE), rows[cut]["detail"]
    assert rows[queued]["status"] == "queued", rows[queued]

    second = RunCommand(env, log_path)
    faults.cleanup(second.kill)
    second.wait_up(api)
    assert api.run(cut)["stdout"] == "cut-start\n"
    assert api.run(fits)["stdout"] == "fits-start\nfits-end\n"
    run = api.wait(queued, timeout=60)
    assert (run["status"], run["stdout"]) == ("succeeded", "queued\n"), run
    again = api.wait(api.submit(program('print("again")\n')), timeout=60)
    assert (again["status"], again["stdout"]) == ("succeeded", "again\n"), again
    faults.check_end_state()
