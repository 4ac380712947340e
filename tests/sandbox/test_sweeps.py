"""Engines sharing a state dir: each sweep takes its own engine's dead runs, never another engine's."""

from __future__ import annotations

import itertools
import secrets
import shutil

import pytest

from sandbox import launcher, subprocess_engine
from sandbox.docker import engine as docker_engine
from sandbox.engine import ExecutionEngine
from tests.sandbox.support import ENGINE_NAMES

pytestmark = pytest.mark.timeout(60)

PREFIXES = {
    "runsc": launcher.RUN_PREFIX,
    "docker": docker_engine.RUN_PREFIX,
    "subprocess": subprocess_engine.RUN_PREFIX,
}


def test_no_engines_prefix_starts_another_engines() -> None:
    assert set(PREFIXES) == set(ENGINE_NAMES)
    clashes = [(a, b) for a, b in itertools.permutations(PREFIXES.values(), 2) if a.startswith(b)]
    assert clashes == []


@pytest.mark.parametrize("sweeper", ENGINE_NAMES)
def test_a_sweep_removes_a_dead_run_of_its_own_engine_and_spares_the_other_engines(
    sweeper: str, request: pytest.FixtureRequest
) -> None:
    engines: dict[str, ExecutionEngine] = {name: request.getfixturevalue(f"{name}_engine") for name in ENGINE_NAMES}
    state_dir = engines[sweeper].config.state_dir
    assert {e.config.state_dir for e in engines.values()} == {state_dir}, "the engines must share a state dir"
    # A dead worker's run of each engine: a work dir whose lock nobody holds.
    dead = {name: state_dir / f"{PREFIXES[name]}user-{secrets.token_hex(6)}" for name in ENGINE_NAMES}
    for workdir in dead.values():
        (workdir / "code").mkdir(parents=True)
        (workdir / "lock").write_text("")
    try:
        engines[sweeper].sweep()
        assert not dead[sweeper].exists()
        taken = [name for name, workdir in dead.items() if name != sweeper and not workdir.exists()]
        assert taken == [], f"the {sweeper} sweep removed work dirs of {taken}"
    finally:
        for workdir in dead.values():
            shutil.rmtree(workdir, ignore_errors=True)
