"""Pooled sandboxes (sandbox/pool.py), against real runsc: booted ahead, used once, never shared.

The whole conformance suite runs with the pool on (it is the runsc engine's default); these tests
look at the pool itself: what a run takes, what it leaves for the next, and what is discarded.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox import cgroups
from sandbox.contract import ExecRequest, ExecResult, Limits, MiB, Status
from sandbox.runsc import RunscEngine
from tests.sandbox.conftest import EngineFactory
from tests.sandbox.support import leftovers, make_request, processes_mentioning

pytestmark = pytest.mark.timeout(90)


def wait_for(predicate: Callable[[], object], what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"waited {seconds} s for: {what}"
        time.sleep(0.02)


def exited(pid: int) -> bool:
    """Its exit is final: a child of this process can be waited for (a multi-threaded one shows
    as a zombie before that), any other is a zombie or gone."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None  # not reaped
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def pooled_engine(new_engine: EngineFactory, **config: object) -> RunscEngine:
    engine = new_engine(**{"pool_size": 1, "warm_launchers": False, **config})
    engine.prepare(make_request("pass"))
    wait_for(lambda: engine.warm_run_ids(), "a pooled sandbox to boot")
    return engine


def run(engine: RunscEngine, code: str, **kwargs: object) -> ExecResult:
    return engine.execute(make_request(code, **kwargs))


def test_a_run_takes_a_booted_sandbox_and_the_pool_boots_the_next_one(new_engine: EngineFactory) -> None:
    engine = pooled_engine(new_engine)
    [ready] = engine.warm_run_ids()

    result = run(engine, "print('hi')")

    assert (result.status, result.stdout.data) == (Status.SUCCEEDED, b"hi\n"), result
    assert result.timings.pooled and result.timings.boot_seconds == 0.0
    wait_for(lambda: engine.warm_run_ids() and engine.warm_run_ids() != [ready], "the next pooled sandbox")
    assert not processes_mentioning(ready), "a used sandbox is still running"


def test_nothing_of_one_run_is_visible_to_the_next(new_engine: EngineFactory) -> None:
    engine = pooled_engine(new_engine)
    first = run(
        engine,
        "import os, subprocess\n"
        "open('/tmp/left-by-the-first', 'w').write('secret')\n"
        "subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
        "os.environ['FIRST'] = '1'\n"
        "print(os.getpid())\n",
        env={"ONLY_FIRST": "yes"},
    )
    assert first.status is Status.SUCCEEDED and first.timings.pooled, first
    wait_for(engine.warm_run_ids, "the next pooled sandbox")

    second = run(
        engine,
        "import json, os\n"
        "procs = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "print(json.dumps({'tmp': os.listdir('/tmp'), 'procs': procs, 'env': sorted(os.environ)}))\n",
    )

    assert second.status is Status.SUCCEEDED and second.timings.pooled, second
    seen = json.loads(second.stdout.data)
    assert seen["tmp"] == []
    assert seen["procs"] == ["1"], "another process shares the sandbox"
    assert "ONLY_FIRST" not in seen["env"] and "FIRST" not in seen["env"]


def test_the_program_gets_its_own_limits_not_the_pools_ceilings(new_engine: EngineFactory) -> None:
    engine = pooled_engine(new_engine)
    code = (
        "import resource\n"
        "print([resource.getrlimit(getattr(resource, n)) for n in ('RLIMIT_NPROC', 'RLIMIT_NOFILE', 'RLIMIT_FSIZE')])\n"
    )
    limits = {"processes": 7, "open_files": 33, "file_size_bytes": 5 * MiB}

    result = run(engine, code, **limits)

    assert result.timings.pooled, result
    assert json.loads(result.stdout.data.decode().replace("(", "[").replace(")", "]")) == [
        [7, 7],
        [33, 33],
        [5 * MiB, 5 * MiB],
    ]


def test_a_waiting_sandbox_gets_a_trickle_of_cpu_and_its_run_the_whole_quota(new_engine: EngineFactory) -> None:
    engine = pooled_engine(new_engine)
    [waiting] = engine.warm_run_ids()
    cgroup = cgroups.RunCgroup(engine.config.cgroup_parent, waiting)
    before = cgroup.stats().cpu_seconds or 0.0
    time.sleep(2)
    idle = (cgroup.stats().cpu_seconds or 0.0) - before
    spin = "import time\nend = time.monotonic() + 1\nwhile time.monotonic() < end: pass\nprint(time.process_time())"

    result = run(engine, spin)

    held = 2 * cgroups.HOLD_QUOTA_US / cgroups.CFS_PERIOD_US  # CPU seconds the hold allows in 2 s
    assert idle <= held * 1.5 + 0.005, f"{idle:.3f} s of CPU in 2 s of waiting"
    assert result.timings.pooled and result.status is Status.SUCCEEDED, result
    assert float(result.stdout.data) >= 0.6, "the run was still held"  # 1 s of spinning on a whole core


def test_stdin_reaches_the_program_byte_exact_even_when_it_never_reads_it(new_engine: EngineFactory) -> None:
    engine = pooled_engine(new_engine)
    data = bytes(range(256)) * 4096  # 1 MiB: more than a pipe holds
    read = run(engine, "import sys, hashlib\nprint(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())", stdin=data)
    wait_for(engine.warm_run_ids, "the next pooled sandbox")
    unread = run(engine, "print('not reading')", stdin=data)

    assert read.timings.pooled and read.stdout.data.decode().strip() == hashlib.sha256(data).hexdigest()
    assert unread.timings.pooled and (unread.status, unread.stdout.data) == (Status.SUCCEEDED, b"not reading\n")


def test_a_run_with_another_tmp_size_does_not_take_the_pools_sandbox(new_engine: EngineFactory) -> None:
    engine = pooled_engine(new_engine)
    [ready] = engine.warm_run_ids()

    result = engine.execute(
        ExecRequest(files={"main.py": b"print(1)"}, limits=Limits(tmp_bytes=8 * MiB, memory_bytes=64 * MiB))
    )

    assert result.status is Status.SUCCEEDED and not result.timings.pooled, result
    assert ready in engine.warm_run_ids(), "the pool's sandbox was used or dropped"


def test_a_broken_pooled_sandbox_is_discarded_and_never_given_to_a_run(new_engine: EngineFactory) -> None:
    engine = pooled_engine(new_engine)
    [ready] = engine.warm_run_ids()
    pids = [int(process.split(":")[0]) for process in processes_mentioning(ready)]
    for pid in pids:  # its runsc, sentry and gofer die
        os.kill(pid, signal.SIGKILL)
    # Dead before a run comes (one that dies the moment it is taken ends that run as killed). A
    # process still exiting has no cmdline already, so wait for the zombies, not for the names.
    wait_for(lambda: all(exited(pid) for pid in pids), "the pooled sandbox's processes to die")

    result = run(engine, "print('fine')")

    assert (result.status, result.stdout.data) == (Status.SUCCEEDED, b"fine\n"), result
    assert not result.timings.pooled
    assert not (engine.config.state_dir / ready).exists(), "the broken sandbox's work dir is left"


def test_a_pooled_sandbox_past_its_age_is_replaced_not_used(new_engine: EngineFactory) -> None:
    engine = pooled_engine(new_engine, pool_max_age_seconds=1.0)
    [old] = engine.warm_run_ids()
    time.sleep(1.2)

    result = run(engine, "pass")

    assert result.status is Status.SUCCEEDED and not result.timings.pooled, result
    wait_for(lambda: engine.warm_run_ids() and old not in engine.warm_run_ids(), "a fresh pooled sandbox")
    assert not (engine.config.state_dir / old).exists()


def test_close_ends_the_pooled_sandboxes_and_leaves_nothing(new_engine: EngineFactory) -> None:
    engine = pooled_engine(new_engine)
    [ready] = engine.warm_run_ids()

    engine.close()

    assert engine.warm_run_ids() == []
    assert leftovers(engine) == {}
    assert not processes_mentioning(ready)


def test_closing_kills_the_waiting_sandboxes_at_once(new_engine: EngineFactory) -> None:
    # On their trickle of CPU, inits told to exit took seconds each: a worker's stop waited for them.
    engine = pooled_engine(new_engine, pool_size=3)
    wait_for(lambda: len(engine.warm_run_ids()) == 3, "three pooled sandboxes")
    waiting = engine.warm_run_ids()

    started = time.monotonic()
    engine.close()

    assert time.monotonic() - started < 2.0  # each one alone was given 2 s to exit
    assert leftovers(engine) == {}
    assert not any(processes_mentioning(run_id) for run_id in waiting)


def test_with_the_pool_off_every_run_boots(new_engine: EngineFactory) -> None:
    engine = new_engine(pool_size=0)
    engine.prepare(make_request("pass"))
    results = [run(engine, "pass") for _ in range(2)]
    assert [r.timings.pooled for r in results] == [False, False]
    assert all(r.timings.boot_seconds for r in results)


def test_the_pool_boots_no_more_once_its_idle_sandboxes_reach_the_memory_cap(new_engine: EngineFactory) -> None:
    uncapped = pooled_engine(new_engine, pool_size=3)
    wait_for(lambda: len(uncapped.warm_run_ids()) == 3, "three pooled sandboxes without a cap")
    # A cap below two sandboxes' memory: the first is booted (nothing idle yet), the second is not.
    engine = pooled_engine(new_engine, pool_size=3, pool_memory_bytes=MiB)
    time.sleep(1.5)  # as long as booting a second one would take

    assert len(engine.warm_run_ids()) == 1
    assert run(engine, "print('still pooled')").timings.pooled
