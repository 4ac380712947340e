"""A pooled sandbox's preloaded interpreter (sandbox/guest/crucible-init --preload), against real
runsc: a request with `preload` runs as in a fresh `python3 -u main.py`, apart from the modules it
finds imported already; one without it, or that cannot have it, gets the fresh interpreter."""

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
    "numpy_loaded": "numpy" in sys.modules,
}))
"""


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


def both_ways(engine: RunscEngine, code: str, **kwargs: object) -> tuple[ExecResult, ExecResult]:
    return run_pooled(engine, code, preload=True, **kwargs), run_pooled(engine, code, preload=False, **kwargs)


def test_a_program_sees_the_same_start_either_way_but_the_preloaded_modules(engine: RunscEngine) -> None:
    preloaded, fresh = both_ways(engine, PROBE, argv=("a b", "--c"), stdin=b"in\n", env={"MINE": "1"})

    seen = [json.loads(r.stdout.data) for r in (preloaded, fresh)]
    assert [s.pop("numpy_loaded") for s in seen] == [True, False]
    assert seen[0] == seen[1]
    assert seen[0]["argv"] == ["/code/main.py", "a b", "--c"] and seen[0]["path0"] == "/code"
    assert seen[0]["env"]["MINE"] == "1" and seen[0]["pid"] == 1 and seen[0]["main_is_me"]


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
def test_errors_and_exit_codes_are_reported_as_a_fresh_interpreter_reports_them(engine: RunscEngine, code: str) -> None:
    preloaded, fresh = both_ways(engine, code)

    assert (preloaded.status, preloaded.reason, preloaded.exit_code) == (fresh.status, fresh.reason, fresh.exit_code)
    assert preloaded.stderr.data == fresh.stderr.data
    assert b"crucible-init" not in preloaded.stderr.data


def test_threads_atexit_and_unclosed_files_finish_before_the_exit(engine: RunscEngine) -> None:
    code = (
        "import atexit, threading, time\n"
        "atexit.register(lambda: print('atexit', flush=True))\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread', flush=True))).start()\n"
        "out = open('/dev/stdout', 'w')\n"
        "out.write('unclosed\\n')\n"  # buffered, never closed: written when the object goes
    )
    preloaded, fresh = both_ways(engine, code)

    assert preloaded.status is Status.SUCCEEDED, preloaded
    assert sorted(preloaded.stdout.data.splitlines()) == sorted(fresh.stdout.data.splitlines())
    assert sorted(preloaded.stdout.data.splitlines()) == [b"atexit", b"thread", b"unclosed"]


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
