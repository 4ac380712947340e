"""The runsc engine's warm launchers (sandbox/launcher.py), against real runsc and real cgroups.

A warm launcher is a `/bin/sh` already inside the next run's cgroup, with that run's work dir, that
execs `runsc run` when a run sends it one line. The sh's pid therefore *becomes* the run's
`runsc run`: that is how these tests see which launcher a run used.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox import cgroups
from sandbox.contract import ExecResult, Status
from sandbox.engine import ExecutionEngine
from sandbox.launcher import Launcher, LauncherPool
from sandbox.runsc import RUN_PREFIX, RunscEngine
from tests.sandbox.support import REPO_ROOT, make_request, run_cgroup_dirs, work_dirs

pytestmark = pytest.mark.timeout(90)

EngineFactory = Callable[..., RunscEngine]


# -- helpers ----------------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], object], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"waited {seconds} s for: {what}"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for whoever inherited it to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def run_cgroup(engine: ExecutionEngine, run_id: str) -> cgroups.RunCgroup:
    return cgroups.RunCgroup(engine.config.cgroup_parent, run_id)


def launcher_shells(engine: ExecutionEngine, run_id: str) -> list[int]:
    """Live `/bin/sh` processes listed in the cgroup.procs of run `run_id`'s cgroup."""
    return [
        pid for pid in run_cgroup(engine, run_id).pids_inside() if alive(pid) and cmdline(pid)[:2] == ["/bin/sh", "-c"]
    ]


def warm_launchers_ready(engine: RunscEngine, count: int | None) -> dict[str, int]:
    """Wait until the engine holds `count` (None: at least one) warm launchers, each one's sh inside its
    cgroup, and the pool's fill thread has finished: {id: sh pid}."""
    found: dict[str, int] = {}

    def ready() -> bool:
        found.clear()
        ids = engine.warm_run_ids()
        for run_id in ids:
            shells = launcher_shells(engine, run_id)
            if len(shells) == 1:
                found[run_id] = shells[0]
        fill_done = not any(t.name == "crucible-launchers" for t in threading.enumerate())
        enough = len(ids) == count if count is not None else len(ids) >= 1
        return enough and len(found) == len(ids) and fill_done

    wait_for(ready, f"{count} warm launcher(s) with their sh inside their cgroup; have {engine.warm_run_ids()}")
    return dict(found)


def assert_is_gone(engine: ExecutionEngine, run_id: str) -> None:
    assert not (engine.config.state_dir / run_id).exists(), f"work dir of {run_id} left behind"
    assert [str(d) for d in run_cgroup(engine, run_id).dirs.values() if d.exists()] == []


def assert_is_kept(engine: ExecutionEngine, run_id: str) -> None:
    assert (engine.config.state_dir / run_id).is_dir(), f"no work dir for {run_id}"
    assert [str(d) for d in run_cgroup(engine, run_id).dirs.values() if not d.is_dir()] == []


def becomes_the_runs_runsc(engine: ExecutionEngine, run_id: str, pid: int) -> Callable[[], bool]:
    """True once `pid` (a launcher's sh) has exec'd `runsc ... run --bundle <run_id's work dir>`."""
    bundle = str(engine.config.state_dir / run_id)

    def check() -> bool:
        args = cmdline(pid)
        return bool(args) and args[0].endswith("runsc") and "run" in args and bundle in args

    return check


def execute_watching(engine: ExecutionEngine, code: str, watch: Callable[[], bool]) -> tuple[ExecResult, bool]:
    """Run `code` on another thread; whether `watch()` was true at some point while it ran."""
    out: dict[str, ExecResult] = {}
    thread = threading.Thread(target=lambda: out.setdefault("r", engine.execute(make_request(code))))
    thread.start()
    seen = False
    while thread.is_alive() and not seen:
        seen = watch()
        time.sleep(0.005)
    thread.join()
    return out["r"], seen


def assert_ran(result: ExecResult, stdout: bytes) -> None:
    assert (result.status, result.stdout.data) == (Status.SUCCEEDED, stdout), result


# -- a run leaves one warm launcher, and the next run uses it -----------------------------------------


def test_after_a_run_a_warm_launcher_waits_in_a_cgroup_of_its_own_and_the_next_run_uses_it(
    new_engine: EngineFactory,
) -> None:
    engine = new_engine()
    assert engine.warm_run_ids() == []
    assert_ran(engine.execute(make_request("print('first')")), b"first\n")

    (warm_id, sh_pid), *_ = warm_launchers_ready(engine, 1).items()
    assert warm_id.startswith(RUN_PREFIX)
    assert_is_kept(engine, warm_id)
    # Its sh is in the cgroup in every controller (it joined them all before waiting).
    for procs in run_cgroup(engine, warm_id).procs_files:
        assert str(sh_pid) in Path(procs).read_text().split(), procs
    # ...and nothing else of the first run is left: only the launcher's work dir and cgroup.
    assert work_dirs(engine, RUN_PREFIX) == [warm_id]
    assert cgroups.leftover_names(engine.config.cgroup_parent) == [warm_id]

    code = "import time; time.sleep(1); print('second')"
    result, used = execute_watching(engine, code, becomes_the_runs_runsc(engine, warm_id, sh_pid))
    assert_ran(result, b"second\n")
    assert used, f"the warm sh {sh_pid} never became the run's `runsc run` on {warm_id}'s bundle"
    # The launcher was the run's: it went with the run, and a fresh one took its place.
    assert_is_gone(engine, warm_id)
    (next_id, next_pid), *_ = warm_launchers_ready(engine, 1).items()
    assert next_id != warm_id and next_pid != sh_pid
    assert work_dirs(engine, RUN_PREFIX) == [next_id]


# -- close() ----------------------------------------------------------------------------------------


def test_close_ends_every_warm_launcher_and_later_runs_start_cold(new_engine: EngineFactory) -> None:
    engine = new_engine()
    assert_ran(engine.execute(make_request("print(1)")), b"1\n")
    warm = warm_launchers_ready(engine, 1)

    engine.close()

    assert engine.warm_run_ids() == []
    for run_id, pid in warm.items():
        assert not alive(pid), f"the launcher sh {pid} outlived close(): {cmdline(pid)}"
        assert_is_gone(engine, run_id)
    assert run_cgroup_dirs(engine.config.cgroup_parent) == []
    assert work_dirs(engine, RUN_PREFIX) == []

    # A closed engine still runs requests, each with a launcher of its own, and keeps none.
    assert_ran(engine.execute(make_request("print(2)")), b"2\n")
    time.sleep(0.3)  # a (wrong) refill would have started with the run, long before it ended
    assert engine.warm_run_ids() == []
    assert run_cgroup_dirs(engine.config.cgroup_parent) == []
    assert work_dirs(engine, RUN_PREFIX) == []


# -- a dead launcher ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("nothing_left_behind")
def test_a_warm_launcher_that_died_is_not_used_and_its_cgroup_and_work_dir_go(new_engine: EngineFactory) -> None:
    engine = new_engine()
    assert_ran(engine.execute(make_request("print(1)")), b"1\n")
    # However many the shared engine keeps (as many as its runs at once), kill them all.
    warm = warm_launchers_ready(engine, None)
    for pid in warm.values():
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in warm.values()), "the killed launchers to die")

    assert_ran(engine.execute(make_request("print('after the kill')")), b"after the kill\n")

    for run_id in warm:
        assert run_id not in engine.warm_run_ids()
        assert_is_gone(engine, run_id)


# -- the engine's process dies without close() --------------------------------------------------------

DYING_WORKER = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from sandbox import cgroups
from sandbox.contract import ExecRequest
from sandbox.engine import EngineConfig, get_engine

config = EngineConfig(images_dir=Path(sys.argv[2]), state_dir=Path(sys.argv[3]), cgroup_parent=sys.argv[4], pool_size=0)
engine = get_engine("runsc", config)
result = engine.execute(ExecRequest(files={"main.py": b"print('worker')"}))
deadline = time.monotonic() + 10
ids, pids = [], []
while not pids and time.monotonic() < deadline:
    ids = engine.warm_run_ids()
    pids = cgroups.RunCgroup(config.cgroup_parent, ids[0]).pids_inside() if ids else []
    time.sleep(0.02)
print(json.dumps({"status": result.status.value, "stdout": result.stdout.data.decode(), "warm": ids, "pids": pids}))
sys.stdout.flush()
os._exit(0)  # no close(), no finalizers: as if the worker had been killed
"""


def test_when_the_engines_process_dies_its_launcher_exits_and_its_janitor_removes_the_rest(
    new_engine: EngineFactory, images_dir: Path
) -> None:
    engine = new_engine()  # only for the checks: the dying worker has the same config
    config = engine.config
    worker = subprocess.run(
        [
            sys.executable,
            "-c",
            DYING_WORKER,
            str(REPO_ROOT),
            str(images_dir),
            str(config.state_dir),
            config.cgroup_parent,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stderr
    report = json.loads(worker.stdout)
    assert (report["status"], report["stdout"]) == ("succeeded", "worker\n"), report
    assert len(report["warm"]) == 1 and len(report["pids"]) == 1, report
    warm_id, sh_pid = report["warm"][0], report["pids"][0]

    # Nobody sweeps: the janitor (sandbox/janitor.py) saw its worker go and removed the rest.
    wait_for(lambda: not alive(sh_pid), f"the orphaned launcher sh {sh_pid} to exit", seconds=10)
    wait_for(lambda: not (config.state_dir / warm_id).exists(), "the launcher's work dir to go", seconds=10)
    assert_is_gone(engine, warm_id)
    assert run_cgroup_dirs(config.cgroup_parent) == []
    assert work_dirs(engine, RUN_PREFIX) == []


# -- configuration and pool size ----------------------------------------------------------------------


def test_with_warm_launchers_off_no_launcher_is_kept_after_a_run(new_engine: EngineFactory) -> None:
    engine = new_engine(warm_launchers=False)
    for n in range(2):
        assert_ran(engine.execute(make_request(f"print({n})")), f"{n}\n".encode())
        deadline = time.monotonic() + 0.3  # a (wrong) fill starts with the run, long before it ends
        while time.monotonic() < deadline:
            assert engine.warm_run_ids() == []
            assert run_cgroup_dirs(engine.config.cgroup_parent) == []
            assert work_dirs(engine, RUN_PREFIX) == []
            time.sleep(0.02)


def test_two_runs_at_once_leave_two_warm_launchers(new_engine: EngineFactory) -> None:
    engine = new_engine()
    results: dict[int, ExecResult] = {}
    spans: dict[int, tuple[float, float]] = {}

    def one(n: int) -> None:
        started = time.monotonic()
        results[n] = engine.execute(make_request(f"import time; time.sleep(1.5); print({n})"))
        spans[n] = (started, time.monotonic())

    threads = [threading.Thread(target=one, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in range(2):
        assert_ran(results[n], f"{n}\n".encode())
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], f"the runs did not overlap: {spans}"

    warm = warm_launchers_ready(engine, 2)
    assert len(set(warm.values())) == 2
    # Exactly these two: nothing else left by the runs, and no third launcher.
    assert work_dirs(engine, RUN_PREFIX) == sorted(warm)
    assert cgroups.leftover_names(engine.config.cgroup_parent) == sorted(warm)
    # ...and one run after that keeps the pool at two.
    assert_ran(engine.execute(make_request("print('again')")), b"again\n")
    assert len(warm_launchers_ready(engine, 2)) == 2


# -- fork ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("nothing_left_behind")
def test_a_forked_child_neither_uses_nor_ends_the_parents_warm_launcher(new_engine: EngineFactory) -> None:
    engine = new_engine()
    assert_ran(engine.execute(make_request("print(1)")), b"1\n")
    warm = warm_launchers_ready(engine, None)

    pid = os.fork()  # no launcher is being made now: the pool's lock is free
    if pid == 0:
        code = 3
        try:
            result = engine.execute(make_request("print('child')"))
            code = 0 if (result.status, result.stdout.data) == (Status.SUCCEEDED, b"child\n") else 1
        finally:
            os._exit(code)
    try:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child's run failed"

        # The parent's launchers are all still there and waiting: none was used or ended.
        assert sorted(engine.warm_run_ids()) == sorted(warm)
        for run_id, sh_pid in warm.items():
            assert alive(sh_pid), f"the child ended the parent's launcher {run_id}"
            assert launcher_shells(engine, run_id) == [sh_pid]
            assert_is_kept(engine, run_id)

        # ...and the parent's next run uses one of them.
        watches = [becomes_the_runs_runsc(engine, run_id, sh_pid) for run_id, sh_pid in warm.items()]
        code = "import time; time.sleep(1); print('parent')"
        result, used = execute_watching(engine, code, lambda: any(w() for w in watches))
        assert_ran(result, b"parent\n")
        assert used, "the parent's next run did not use its warm launcher"
    finally:
        # The child died without close(): its own warm launcher is a dead worker's, the sweep's.
        engine.sweep()


def test_close_while_a_launcher_is_being_made_leaves_nothing_once_it_returns(
    new_engine: EngineFactory,
) -> None:
    # At interpreter exit the pool's finalizer runs close() while its daemon fill thread may be
    # half-way through making a launcher; close() waits for it, or that launcher would be left.
    engine = new_engine()
    engine.check()

    def slow_make() -> Launcher:
        launcher = Launcher(engine.config.state_dir, engine.config.cgroup_parent, engine.runsc_flags())
        if threading.current_thread().name == "crucible-launchers":
            time.sleep(0.5)  # the fill thread's: made, but not in the pool yet when close() comes
        return launcher

    pool = LauncherPool(slow_make)
    taken = pool.take()  # none warm: made now, and a fill starts for the next run
    wait_for(lambda: work_dirs(engine, RUN_PREFIX) != [taken.run_id], "the fill thread to make its launcher")
    pool.close()

    assert pool.warm_ids() == []
    assert work_dirs(engine, RUN_PREFIX) == [taken.run_id]
    assert cgroups.leftover_names(engine.config.cgroup_parent) == [taken.run_id]
    taken.discard()
    pool.done()
    assert work_dirs(engine, RUN_PREFIX) == []
    assert run_cgroup_dirs(engine.config.cgroup_parent) == []
