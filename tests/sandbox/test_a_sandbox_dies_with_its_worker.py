"""A sandbox dies with its worker: killed or hung, the process that started it leaves nothing behind.

Each test runs a real worker process (an engine in a child Python) against real runsc, dockerd or
host processes, kills or stops it once its sandbox is up, and looks for what is left.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sandbox import cgroups
from sandbox.engine import EngineConfig, get_engine
from sandbox.images import Image
from tests.sandbox.support import REPO_ROOT, all_cgroup_dirs, processes_mentioning

pytestmark = pytest.mark.timeout(60)

# Everything a dead or hung worker left must be gone this long after the kill (or the backstop).
GONE_WITHIN = 10.0

# The worker: one engine, one run of argv's program; it logs to stdout and echoes the run's output.
WORKER = """
import json, logging, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from sandbox.contract import ExecRequest, Limits
from sandbox import cgroups
from sandbox.engine import EngineConfig, get_engine

cfg = json.loads(sys.argv[2])
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="log %(name)s %(message)s")
engine = get_engine(cfg["engine"], EngineConfig(**cfg["config"]))

def say(*words):
    print(*words, flush=True)

def echo(stream, offset, chunk):
    say("out", json.dumps(chunk.decode()), "janitor", engine._janitor.pid)

def warm_ids():
    deadline = time.monotonic() + 10
    while hasattr(engine, "warm_run_ids") and not engine.warm_run_ids() and time.monotonic() < deadline:
        time.sleep(0.02)
    return engine.warm_run_ids() if hasattr(engine, "warm_run_ids") else []

for i, code in enumerate(cfg["runs"]):
    if i and cfg["kill_janitor"]:
        say("warm", json.dumps(warm_ids()))
        janitor = engine._janitor._state.proc
        janitor.kill()
        janitor.wait()
    request = ExecRequest(files={"main.py": code.encode()}, limits=Limits(wall_seconds=cfg["wall"]))
    result = engine.execute(request, on_output=echo)
    say("result", result.status.value, result.reason and result.reason.value, json.dumps(result.stdout.data.decode()))
say("idle", json.dumps(warm_ids()))
time.sleep(120)
"""

SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(30)\n"


@dataclass
class Worker:
    """A running worker process and what it printed so far."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)
    last_output: str = ""

    def wait_for(self, prefix: str, seconds: float = 30.0) -> str:
        """The first line (not yet returned) that starts with `prefix`."""
        deadline = time.monotonic() + seconds
        while True:
            for i, line in enumerate(self.seen):
                if line.startswith(prefix):
                    del self.seen[: i + 1]
                    if prefix == "out":
                        self.last_output = line
                    return line
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the worker never said {prefix!r}; it said {self.seen}"
            try:
                self.seen.append(self.lines.get(timeout=remaining))
            except queue.Empty:
                pass

    def started_sandbox(self) -> str:
        """The id in the worker's "sandbox <id> started" log line; waits for the program's first output."""
        run_id = self.wait_for("log sandbox.").split()[3]
        self.wait_for("out")
        return run_id

    def janitor_pid(self) -> int:
        """The janitor named on the worker's latest output line (waits for one if there was none)."""
        return int((self.last_output or self.wait_for("out")).split()[-1])


@dataclass
class Place:
    """One test's state dir and cgroup parent, shared by its workers and the checks."""

    state_dir: Path
    cgroup_parent: str
    images_dir: Path
    docker_url: str = ""

    def config(self, **fields: Any) -> dict[str, Any]:
        return {
            "images_dir": str(self.images_dir),
            "state_dir": str(self.state_dir),
            "cgroup_parent": self.cgroup_parent,
            "docker_url": self.docker_url or EngineConfig.docker_url,
            "pool_size": 0,  # these tests count warm launchers; the pooled sandboxes' tests set it
            **fields,
        }


@pytest.fixture
def place(image: Image, images_dir: Path) -> Iterator[Place]:
    state_dir = Path(tempfile.mkdtemp(prefix="cdw-"))  # short: runsc's socket paths stay < 108 bytes
    yield Place(state_dir, f"crucible-pytest-{state_dir.name}", images_dir)
    shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def start_worker(place: Place) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(
        engine: str = "runsc", *, runs: list[str], wall: float = 20.0, kill_janitor: bool = False, **config: Any
    ) -> Worker:
        spec = {"engine": engine, "config": place.config(**config), "runs": runs, "wall": wall}
        spec["kill_janitor"] = kill_janitor
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(REPO_ROOT), json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        worker = Worker(proc)
        assert proc.stdout is not None
        stdout = proc.stdout
        threading.Thread(target=lambda: [worker.lines.put(line.rstrip("\n")) for line in stdout], daemon=True).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        with_signal(worker, signal.SIGKILL)
        worker.proc.wait()
    # Whatever a failed test left: the engines' own sweeps, then the cgroup parents.
    for name in ("runsc", "subprocess"):
        get_engine(name, EngineConfig(**place.config(allow_subprocess=True))).sweep()  # type: ignore[arg-type]
    for parent in (place.cgroup_parent, f"{place.cgroup_parent}-docker"):
        cgroups.remove_cgroup_dirs(parent)


def with_signal(worker: Worker, signum: int) -> None:
    try:
        os.kill(worker.proc.pid, signum)
    except ProcessLookupError:
        pass


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def remains(
    place: Place, run_ids: list[str], *, janitor: int | None = None, only: bool = False
) -> dict[str, list[str]]:
    """What is left of the runs `run_ids`, and unless `only`, of every other run under `place`."""
    state_dir = place.state_dir
    dirs = sorted(p.name for p in state_dir.iterdir()) if state_dir.is_dir() else []
    cgroup_dirs = all_cgroup_dirs(place.cgroup_parent) + all_cgroup_dirs(f"{place.cgroup_parent}-docker")
    found = {
        "processes": [p for run_id in run_ids for p in processes_mentioning(run_id)],
        "work dirs": [d for d in dirs if not only or d in run_ids],
        "runsc state dirs": [str(state_dir / r / "state") for r in run_ids if (state_dir / r / "state").exists()],
        "cgroup dirs": [d for d in cgroup_dirs if not only or Path(d).name in run_ids],
        "janitor": [str(janitor)] if janitor is not None and alive(janitor) else [],
    }
    return {k: v for k, v in found.items() if v}


def gone_within(seconds: float, what: Callable[[], dict[str, list[str]]]) -> float:
    """Seconds until `what()` is empty; fails with what is left after `seconds`."""
    started = time.monotonic()
    while left := what():
        assert time.monotonic() - started < seconds, f"still there after {seconds} s: {left}"
        time.sleep(0.05)
    return time.monotonic() - started


def wait_until(predicate: Callable[[], object], what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"waited {seconds} s for: {what}"
        time.sleep(0.02)


def run_dirs(place: Place) -> list[str]:
    return sorted(p.name for p in place.state_dir.iterdir() if p.name.startswith("crucible-"))


# -- the worker is killed -----------------------------------------------------------------------------


def test_a_killed_workers_running_sandbox_and_warm_launcher_are_gone_within_seconds(
    place: Place, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker(runs=[SLEEPER])
    run_id = worker.started_sandbox()
    janitor = worker.janitor_pid()
    assert run_id.startswith("crucible-runsc-")
    assert processes_mentioning(run_id), "the sandbox is not running"
    # The run took the pool's place, so a launcher for the next run is being made: wait for it.
    wait_until(lambda: len(run_dirs(place)) == 2, "a warm launcher next to the run")
    warm_id = next(d for d in run_dirs(place) if d != run_id)

    with_signal(worker, signal.SIGKILL)

    gone_within(GONE_WITHIN, lambda: remains(place, [run_id, warm_id], janitor=janitor))


def test_an_idle_killed_workers_warm_launcher_is_gone_within_seconds(
    place: Place, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker(runs=["print('once')"])
    assert worker.wait_for("result").split()[1] == "succeeded"
    warm = json.loads(worker.wait_for("idle").split(" ", 1)[1])
    assert len(warm) == 1, warm
    assert run_dirs(place) == warm

    with_signal(worker, signal.SIGKILL)

    gone_within(GONE_WITHIN, lambda: remains(place, warm))


def test_a_killed_workers_pooled_sandboxes_idle_and_running_are_gone_within_seconds(
    place: Place, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker(runs=["print('once')", SLEEPER], pool_size=1, warm_launchers=False)
    assert worker.wait_for("result").split()[1] == "succeeded"  # cold: the pool was empty
    run_id = worker.started_sandbox()  # from the pool, booted after the first run
    janitor = worker.janitor_pid()
    wait_until(lambda: len(run_dirs(place)) == 2, "a pooled sandbox booted next to the run")
    pooled_id = next(d for d in run_dirs(place) if d != run_id)
    # Its work dir is made first; its launcher execs runsc a moment later.
    wait_until(lambda: processes_mentioning(pooled_id), "the pooled sandbox's runsc")

    with_signal(worker, signal.SIGKILL)

    gone_within(GONE_WITHIN, lambda: remains(place, [run_id, pooled_id], janitor=janitor))


def test_a_worker_whose_janitor_was_killed_gets_a_new_one_that_knows_every_live_run(
    place: Place, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker(runs=["print('first')", SLEEPER], kill_janitor=True)
    first_janitor = int(worker.wait_for("out").split()[-1])
    # The worker kills its janitor while its warm launcher is registered with it, then runs again.
    warm = json.loads(worker.wait_for("warm").split(" ", 1)[1])
    assert len(warm) == 1, warm
    run_id = worker.started_sandbox()
    second_janitor = worker.janitor_pid()
    assert second_janitor != first_janitor and not alive(first_janitor)
    assert run_id == warm[0], "the run did not take the warm launcher"
    wait_until(lambda: len(run_dirs(place)) == 2, "a warm launcher next to the run")

    with_signal(worker, signal.SIGKILL)

    gone_within(GONE_WITHIN, lambda: remains(place, run_dirs(place) or [run_id], janitor=second_janitor))


def test_the_janitor_has_a_session_of_its_own_and_none_of_the_workers_environment(
    place: Place, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker(runs=[SLEEPER])
    worker.started_sandbox()
    janitor = worker.janitor_pid()
    assert os.getsid(janitor) == janitor  # a terminal's Ctrl-C to the worker's group does not reach it
    environ = Path(f"/proc/{janitor}/environ").read_bytes().split(b"\0")
    assert [v.split(b"=")[0] for v in environ if v] == [b"PATH"]


# -- the worker hangs ---------------------------------------------------------------------------------


def test_a_stopped_workers_sandbox_is_torn_down_at_its_wall_limit_plus_the_grace(
    place: Place, start_worker: Callable[..., Worker]
) -> None:
    wall, grace = 3.0, 1.0
    worker = start_worker(runs=[SLEEPER], wall=wall, backstop_grace_seconds=grace)
    run_id = worker.started_sandbox()
    wait_until(lambda: len(run_dirs(place)) == 2, "a warm launcher next to the run")
    warm_id = next(d for d in run_dirs(place) if d != run_id)

    with_signal(worker, signal.SIGSTOP)
    time.sleep(0.5)
    assert processes_mentioning(run_id), "torn down before its wall-time limit"
    gone_within(wall + grace + GONE_WITHIN, lambda: remains(place, [run_id], only=True))
    assert run_dirs(place) == [warm_id], "a live worker's warm launcher is its own"

    with_signal(worker, signal.SIGCONT)
    status = worker.wait_for("result").split()[1]
    assert status != "succeeded"  # the worker carries on, and reports the run as ended by force
    worker.wait_for("idle")


# -- a periodic sweep ---------------------------------------------------------------------------------


def test_a_sweep_every_moment_spares_the_live_runs_of_another_worker(
    place: Place, start_worker: Callable[..., Worker]
) -> None:
    code = "import time\nprint('up', flush=True)\ntime.sleep(2)\nprint('done')\n"
    worker = start_worker(runs=["print('warm-up')", code, code])
    engine = get_engine("runsc", EngineConfig(**place.config()))  # type: ignore[arg-type]
    # A dead worker's run: a work dir nobody holds the lock of.
    dead = place.state_dir / "crucible-runsc-deadbeef00000000"
    (dead / "code").mkdir(parents=True)
    (dead / "lock").write_text("")
    durations: list[float] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def sweep_all_along() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                engine.sweep()
            except BaseException as exc:
                errors.append(exc)
            durations.append(time.monotonic() - started)
            stop.wait(0.05)

    sweeper = threading.Thread(target=sweep_all_along)
    sweeper.start()
    try:
        results = [worker.wait_for("result") for _ in range(3)]
    finally:
        stop.set()
        sweeper.join()
    assert errors == []
    assert not dead.exists()
    slept = json.dumps("up\ndone\n")
    assert results == ['result succeeded None "warm-up\\n"'] + [f"result succeeded None {slept}"] * 2
    assert len(durations) > 10 and max(durations) < 2.0, f"{len(durations)} sweeps, slowest {max(durations):.2f} s"


# -- the other engines --------------------------------------------------------------------------------


def test_a_killed_workers_subprocess_run_is_gone_within_seconds(
    place: Place, start_worker: Callable[..., Worker]
) -> None:
    # A daemon that left the program's process (and, as root, would still run as the run's uid).
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n    time.sleep(60)\n    os._exit(0)\n"
        "print('up', flush=True)\ntime.sleep(30)\n"
    )
    worker = start_worker("subprocess", runs=[code], allow_subprocess=True)
    run_id = worker.started_sandbox()
    janitor = worker.janitor_pid()
    assert run_id.startswith("crucible-subprocess-")
    assert len(processes_mentioning(run_id)) == 2, "the program and its daemon"

    with_signal(worker, signal.SIGKILL)

    gone_within(GONE_WITHIN, lambda: remains(place, [run_id], janitor=janitor))


@pytest.mark.timeout(180)  # the first docker test of a session starts dockerd and imports the image
def test_a_killed_workers_container_is_gone_within_seconds(
    place: Place, start_worker: Callable[..., Worker], request: pytest.FixtureRequest
) -> None:
    dockerd = request.getfixturevalue("dockerd")
    place.docker_url = dockerd.url
    docker = get_engine("docker", EngineConfig(**place.config()))  # type: ignore[arg-type]
    docker.check()  # imports the image before the worker's clock starts
    worker = start_worker("docker", runs=[SLEEPER])
    run_id = worker.started_sandbox()
    janitor = worker.janitor_pid()
    api: Any = docker._api()  # type: ignore[attr-defined]
    assert [c["Names"] for c in api.containers(filters={"name": run_id})] == [[f"/{run_id}"]]

    with_signal(worker, signal.SIGKILL)

    def left() -> dict[str, list[str]]:
        found = remains(place, [run_id], janitor=janitor)
        containers = api.containers(all=True, filters={"name": run_id})
        return {**found, **({"containers": [str(c["Names"]) for c in containers]} if containers else {})}

    try:
        gone_within(GONE_WITHIN, left)
    finally:
        docker.sweep()
