"""A pooled sandbox's interpreter (sandbox/guest/crucible-init), against real runsc: a program runs
in it as in a fresh `python3 -u main.py` (a sandbox booted for the run), apart from the modules it
finds imported when it asked for `preload`; one that cannot have that gets a plain sandbox."""

from __future__ import annotations

import json

import pytest

from sandbox.contract import ExecResult, MiB, Status
from sandbox.runsc import RunscEngine
from tests.sandbox.conftest import EngineFactory
from tests.sandbox.support import make_request
from tests.sandbox.test_pooled_sandboxes import pooled_engine, wait_for

pytestmark = pytest.mark.timeout(120)

# What a program can see of how it was started, apart from sys.modules.
PROBE = """\
import json, os, sys
print(json.dumps({
    "argv": sys.argv, "path0": sys.path[0], "cwd": os.getcwd(), "name": __name__, "file": __file__,
    "main_is_me": sys.modules["__main__"].__dict__ is globals(), "env": dict(os.environ),
    "stdin": sys.stdin.read(), "pid": os.getpid(), "flags": list(sys.flags),
    "executable": sys.executable, "encoding": sys.stdout.encoding,
    "numpy_loaded": "numpy" in sys.modules, "orig_argv": sys.orig_argv,
}))
"""


@pytest.fixture
def cold(new_engine: EngineFactory) -> RunscEngine:
    """An engine with no pool: each run boots a sandbox whose PID 1 is `python3 -u main.py`."""
    return new_engine(pool_size=0, warm_launchers=False)


@pytest.fixture
def engine(new_engine: EngineFactory) -> RunscEngine:
    """An engine with one pooled sandbox of each kind booted: preloaded, and bare."""
    engine = new_engine(pool_size=1, warm_launchers=False)
    for preload in (True, False):
        engine.prepare(make_request("pass", preload=preload))
    wait_for(lambda: len(engine.warm_run_ids()) == 2, "both pooled sandboxes")
    return engine


def run_pooled(engine: RunscEngine, code: str, **kwargs: object) -> ExecResult:
    """Run in a pooled sandbox, then wait for the pools to be full again (each test runs several)."""
    result = engine.execute(make_request(code, **kwargs))
    assert result.timings.pooled, result
    wait_for(lambda: len(engine.warm_run_ids()) == 2, "the next pooled sandbox")
    return result


def three_ways(
    engine: RunscEngine, cold: RunscEngine, code: str, **kwargs: object
) -> tuple[ExecResult, ExecResult, ExecResult]:
    """(preloaded, plain pooled, fresh): the last from a sandbox booted for the run."""
    fresh = cold.execute(make_request(code, **kwargs))
    assert not fresh.timings.pooled
    return run_pooled(engine, code, preload=True, **kwargs), run_pooled(engine, code, preload=False, **kwargs), fresh


def test_a_program_sees_the_same_start_each_way_but_the_preloaded_modules(
    engine: RunscEngine, cold: RunscEngine
) -> None:
    runs = three_ways(engine, cold, PROBE, argv=("a b", "--c"), stdin=b"in\n", env={"MINE": "1"})

    seen = [json.loads(r.stdout.data) for r in runs]
    assert [s.pop("numpy_loaded") for s in seen] == [True, False, False]
    assert seen[0] == seen[1] == seen[2]
    assert seen[0]["argv"] == ["/code/main.py", "a b", "--c"] and seen[0]["path0"] == "/code"
    assert seen[0]["orig_argv"] == ["/usr/bin/python3", "-u", "/code/main.py", "a b", "--c"]
    assert seen[0]["env"]["MINE"] == "1" and seen[0]["pid"] == 1 and seen[0]["main_is_me"]


def test_a_plain_pooled_program_finds_the_modules_of_a_fresh_interpreter_and_no_others(
    engine: RunscEngine, cold: RunscEngine
) -> None:
    code = "import sys\nprint(sorted(sys.modules))\n"
    _, plain, fresh = three_ways(engine, cold, code)

    assert plain.stdout.data == fresh.stdout.data
    assert b"crucible-init" not in plain.stdout.data


@pytest.mark.parametrize(
    "code",
    [
        "def f():\n    1 / 0\nf()\n",
        "x = (\n",
        "import sys\nsys.exit('bye')\n",
        "import sys\nsys.exit(3)\n",
        "raise SystemExit(300)\n",
        "import os\nos._exit(4)\n",
    ],
    ids=["exception", "syntax-error", "exit-message", "exit-code", "exit-code-wraps", "os-exit"],
)
def test_errors_and_exit_codes_are_reported_as_a_fresh_interpreter_reports_them(
    engine: RunscEngine, cold: RunscEngine, code: str
) -> None:
    *pooled, fresh = three_ways(engine, cold, code)

    for run in pooled:
        assert (run.status, run.reason, run.exit_code) == (fresh.status, fresh.reason, fresh.exit_code)
        assert run.stderr.data == fresh.stderr.data
        assert b"crucible-init" not in run.stderr.data


def test_threads_atexit_and_unclosed_files_finish_before_the_exit(engine: RunscEngine, cold: RunscEngine) -> None:
    code = (
        "import atexit, threading, time\n"
        "atexit.register(lambda: print('atexit', flush=True))\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread', flush=True))).start()\n"
        "out = open('/dev/stdout', 'w')\n"
        "out.write('unclosed\\n')\n"  # buffered, never closed: written when the object goes
    )
    for run in three_ways(engine, cold, code):
        assert run.status is Status.SUCCEEDED, run
        assert sorted(run.stdout.data.splitlines()) == [b"atexit", b"thread", b"unclosed"]


def test_a_run_that_sets_a_startup_variable_gets_a_fresh_interpreter(engine: RunscEngine) -> None:
    result = run_pooled(engine, PROBE, preload=True, env={"PYTHONHASHSEED": "0"})

    seen = json.loads(result.stdout.data)
    assert not seen["numpy_loaded"] and seen["env"]["PYTHONHASHSEED"] == "0"


def test_a_run_with_a_small_memory_limit_keeps_its_room_in_a_fresh_interpreter(engine: RunscEngine) -> None:
    small = run_pooled(engine, PROBE, preload=True, memory_bytes=100 * MiB)
    default = run_pooled(engine, PROBE, preload=True)

    assert small.status is Status.SUCCEEDED, small
    assert not json.loads(small.stdout.data)["numpy_loaded"]
    assert json.loads(default.stdout.data)["numpy_loaded"]


def test_with_preloading_off_the_engine_runs_every_program_in_a_fresh_interpreter(
    new_engine: EngineFactory,
) -> None:
    engine = pooled_engine(new_engine, pool_preload=False)
    engine.prepare(make_request("pass", preload=True))

    result = engine.execute(make_request(PROBE, preload=True))

    assert result.timings.pooled and not json.loads(result.stdout.data)["numpy_loaded"], result


def test_a_plain_pooled_program_ends_as_a_fresh_interpreter_ends_finalizers_included(
    engine: RunscEngine, cold: RunscEngine
) -> None:
    code = (
        "import sys, types\n"
        "class Held:\n"
        "    def __del__(self):\n"
        "        sys.stdout.write('finalized\\n')\n"
        "held = types.ModuleType('held')\n"
        "sys.modules['held'] = held\n"
        "held.obj = Held()\n"  # outside __main__: only the interpreter's own teardown finalizes it
    )
    _, plain, fresh = three_ways(engine, cold, code)

    assert fresh.stdout.data == b"finalized\n", fresh
    assert plain.stdout.data == fresh.stdout.data
