"""Fixtures for the sandbox/ tests: the real image, real engines, and a run helper.

Nothing here mocks runsc or dockerd. If runsc (or the image, cgroups, dockerd) is missing, the session
fixture raises the engine's own error, so every engine test *fails* with the message saying how to
fix it instead of silently skipping. dockerd is started here when its socket does not answer, and
stopped again at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import cgroups
from sandbox.cgroups import remove_cgroup_dirs
from sandbox.contract import ExecResult
from sandbox.docker.daemon import PrivateDockerd
from sandbox.engine import EngineConfig, ExecutionEngine, get_engine
from sandbox.images import Image, build_image, default_recipes, host_suite
from sandbox.runsc import RunscEngine
from tests.sandbox.support import REPO_ROOT, leftovers, make_request, remove_cgroup_parent


def _images_dir() -> Path:
    override = os.environ.get("CRUCIBLE_IMAGES_DIR")
    return Path(override) if override else REPO_ROOT / "var" / "images"


@pytest.fixture(scope="session")
def images_dir() -> Path:
    return _images_dir()


@pytest.fixture(scope="session")
def image(images_dir: Path) -> Image:
    """The python3 image, built once (minutes) or reused from the cache (instant)."""
    recipe = default_recipes(host_suite())["python3"]
    return build_image(images_dir, recipe, log=lambda msg: print(msg, file=sys.stderr))


@pytest.fixture(scope="session")
def cgroup_parent() -> str:
    # A parent of our own: other people's runs (and their sweeps) under the production parent
    # "crucible" must neither disturb these tests nor be disturbed by them.
    return f"crucible-pytest-{os.getpid()}"


@pytest.fixture(scope="session")
def state_dir() -> Iterator[Path]:
    # Short, so runsc's unix sockets under <state_dir>/<run>/state stay below the 108-byte limit.
    path = Path(tempfile.mkdtemp(prefix="crucible-pytest-state-"))
    yield path
    # Only removed when empty: a leftover is evidence the leak checks want to show.
    try:
        path.rmdir()
    except OSError:
        pass


@pytest.fixture(scope="session")
def runsc_engine(image: Image, images_dir: Path, state_dir: Path, cgroup_parent: str) -> Iterator[ExecutionEngine]:
    config = EngineConfig(images_dir=images_dir, state_dir=state_dir, cgroup_parent=cgroup_parent)
    eng = get_engine("runsc", config)
    eng.check()  # raises EngineUnavailable (with the install hint) when runsc is missing
    yield eng
    eng.close()
    eng.sweep()
    remove_cgroup_parent(cgroup_parent)


@pytest.fixture(scope="session")
def engine(runsc_engine: ExecutionEngine) -> ExecutionEngine:
    """The engine of engine-specific tests; test_conformance.py overrides it with each engine in turn."""
    return runsc_engine


@pytest.fixture(scope="session")
def dockerd() -> Iterator[PrivateDockerd]:
    """A dockerd with runsc registered; started (and stopped after the session) unless one answers."""
    override = os.environ.get("CRUCIBLE_DOCKER_DIR")
    daemon = PrivateDockerd(Path(override) if override else REPO_ROOT / "var" / "docker")
    # Raises EngineUnavailable saying how to install dockerd; another pytest session running at
    # the same time shares the daemon, and the last one out stops it.
    with daemon.shared():
        yield daemon


@pytest.fixture(scope="session")
def docker_engine(
    dockerd: PrivateDockerd, image: Image, images_dir: Path, state_dir: Path, cgroup_parent: str
) -> Iterator[ExecutionEngine]:
    config = EngineConfig(
        images_dir=images_dir, state_dir=state_dir, cgroup_parent=cgroup_parent, docker_url=dockerd.url
    )
    eng = get_engine("docker", config)
    eng.check()  # imports the image into dockerd once per digest
    yield eng
    eng.sweep()
    remove_cgroup_dirs(f"{cgroup_parent}-docker")


@pytest.fixture(scope="session")
def subprocess_engine(image: Image, images_dir: Path, state_dir: Path, cgroup_parent: str) -> ExecutionEngine:
    config = EngineConfig(
        images_dir=images_dir, state_dir=state_dir, cgroup_parent=cgroup_parent, allow_subprocess=True
    )
    eng = get_engine("subprocess", config)
    eng.check()
    return eng


# -- engines of a test's own --------------------------------------------------------------------------

EngineFactory = Callable[..., RunscEngine]


def remove_cgroup_parent_everywhere(parent: str) -> None:
    root = cgroups.CGROUP_ROOT
    bases = [root] if cgroups.layout() == "v2" else [d for d in root.iterdir() if d.is_dir() and not d.is_symlink()]
    for base in bases:
        try:
            (base / parent).rmdir()
        except OSError:
            pass


def short_state_dir() -> Path:
    # runsc's unix sockets under <state_dir>/<run>/state must stay below 108 bytes.
    return Path(tempfile.mkdtemp(prefix="cwl-"))


@pytest.fixture
def new_engine(image: Image, images_dir: Path) -> Iterator[EngineFactory]:
    """new_engine(**EngineConfig fields): a runsc engine of the test's own state dir and cgroup parent.

    Closed, swept, and its cgroup parent and state dir removed after the test, whatever happened.
    """
    made: list[RunscEngine] = []
    dirs: list[Path] = []

    def make(state_dir: Path | None = None, cgroup_parent: str | None = None, **config: object) -> RunscEngine:
        if state_dir is None:
            state_dir = short_state_dir()
            dirs.append(state_dir)
        if cgroup_parent is None:
            cgroup_parent = f"crucible-pytest-{state_dir.name}"
        eng = get_engine(
            "runsc",
            # Pooling off unless asked for: the warm launchers' tests count launchers.
            EngineConfig(
                images_dir=images_dir, state_dir=state_dir, cgroup_parent=cgroup_parent, **{"pool_size": 0, **config}
            ),  # type: ignore[arg-type]
        )
        assert isinstance(eng, RunscEngine)
        made.append(eng)
        return eng

    yield make
    for eng in made:
        eng.close()
        eng.sweep()
    for eng in made:
        remove_cgroup_parent_everywhere(eng.config.cgroup_parent)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


# -- nothing may be left behind ---------------------------------------------------------------------


@pytest.fixture
def nothing_left_behind(engine: ExecutionEngine) -> Iterator[None]:
    """Use with autouse in a module: the test's engine leaves no sandbox, work dir or cgroup behind."""
    assert leftovers(engine) == {}, "left behind by an earlier test"
    yield
    # Processes may take a moment to be reaped after their sandbox is gone.
    deadline = time.monotonic() + 3
    while leftovers(engine) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(engine) == {}


# -- running ----------------------------------------------------------------------------------------


@pytest.fixture
def run(engine: ExecutionEngine) -> Callable[..., ExecResult]:
    """run(code, *, on_output=..., on_metrics=..., cancel=..., <ExecRequest fields>, <Limits fields>)."""

    def _run(code: str | bytes, **kwargs: Any) -> ExecResult:
        callbacks = {k: kwargs.pop(k) for k in ("on_output", "on_metrics", "cancel") if k in kwargs}
        return engine.execute(make_request(code, **kwargs), **callbacks)

    return _run


@pytest.fixture
def runsc_events_started(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The `runsc events` commands the engine starts from now on (every process is still started)."""
    started: list[list[str]] = []
    real_popen = subprocess.Popen

    class RecordingPopen(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, args: Any, *a: Any, **kw: Any) -> None:
            if isinstance(args, list) and "events" in args:
                started.append(args)
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)
    return started
