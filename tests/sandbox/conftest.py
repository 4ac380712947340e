"""Fixtures for the sandbox/ tests: the real image, real engines, and a run helper.

Nothing here mocks runsc or dockerd. If runsc (or the image, cgroups, dockerd) is missing, the session
fixture raises the engine's own error, so every engine test *fails* with the message saying how to
fix it instead of silently skipping. dockerd is started here when its socket does not answer, and
stopped again at the end of the session.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# pytest's default "prepend" import mode only puts tests/sandbox/ on sys.path; `sandbox` lives at
# the repository root.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sandbox import cgroups  # noqa: E402
from sandbox.contract import ExecRequest, ExecResult, Limits  # noqa: E402
from sandbox.docker_engine import remove_cgroup_dirs  # noqa: E402
from sandbox.dockerd import PrivateDockerd  # noqa: E402
from sandbox.engine import _ENGINES, EngineConfig, ExecutionEngine, engine_names, get_engine  # noqa: E402
from sandbox.images import Image, build_image, default_recipes, host_suite  # noqa: E402


def _registered(name: str) -> bool:
    return name in engine_names() and importlib.util.find_spec(_ENGINES[name].partition(":")[0]) is not None


# Every engine the conformance suite runs against: those registered whose module exists.
ENGINE_NAMES = [name for name in ("runsc", "docker", "subprocess") if _registered(name)]


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
    _remove_cgroup_parent(cgroup_parent)


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


def _remove_cgroup_parent(parent: str) -> None:
    base = cgroups.CGROUP_ROOT
    if cgroups.layout() == "v2":
        candidates = [base / parent]
    else:
        candidates = [base / c / parent for c in cgroups.V1_CONTROLLERS]
    for d in candidates:
        try:
            d.rmdir()
        except OSError:
            pass


# -- nothing may be left behind ---------------------------------------------------------------------


def processes_mentioning(*texts: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(text in cmdline for text in texts):
            found.append(f"{entry.name}: {cmdline}")
    return found


def run_cgroup_dirs(parent: str) -> list[str]:
    """Every run cgroup under `parent`, in every controller (leftover_names only reads one)."""
    if cgroups.layout() == "v2":
        bases = [cgroups.CGROUP_ROOT / parent]
    else:
        bases = [cgroups.CGROUP_ROOT / c / parent for c in cgroups.V1_CONTROLLERS]
    return sorted(str(d) for base in bases if base.is_dir() for d in base.iterdir() if d.is_dir())


def all_cgroup_dirs(parent: str) -> list[str]:
    """Directories under `parent` in every hierarchy, including those no engine limits (v1 devices, ...)."""
    root = cgroups.CGROUP_ROOT
    bases = [root] if cgroups.layout() == "v2" else [d for d in root.iterdir() if d.is_dir() and not d.is_symlink()]
    return sorted(str(d) for base in bases if (base / parent).is_dir() for d in (base / parent).iterdir() if d.is_dir())


def work_dirs(engine: ExecutionEngine, prefix: str) -> list[str]:
    state_dir = engine.config.state_dir
    return sorted(p.name for p in state_dir.iterdir() if p.name.startswith(prefix)) if state_dir.is_dir() else []


def runsc_leftovers(engine: ExecutionEngine) -> dict[str, list[str]]:
    from sandbox.runsc import RUN_PREFIX, RunscEngine

    assert isinstance(engine, RunscEngine)
    # A warm launcher's work dir and cgroup are the next run's, made before it (sandbox/launcher.py);
    # test_runsc_engine.py checks that close() and the engine's death end them.
    warm = engine.warm_run_ids()
    return {
        "work dirs": [d for d in work_dirs(engine, RUN_PREFIX) if d not in warm],
        "cgroups": [c for c in cgroups.leftover_names(engine.config.cgroup_parent) if c not in warm],
        "cgroup dirs": [d for d in run_cgroup_dirs(engine.config.cgroup_parent) if Path(d).name not in warm],
        "runsc processes": processes_mentioning("runsc", str(engine.config.state_dir)),
    }


def docker_leftovers(engine: ExecutionEngine) -> dict[str, list[str]]:
    from sandbox.docker_engine import LABEL_STATE_DIR, RUN_PREFIX, DockerEngine

    assert isinstance(engine, DockerEngine)
    api = engine._api()
    containers = api.containers(all=True, filters={"label": f"{LABEL_STATE_DIR}={engine.config.state_dir}"})
    return {
        "work dirs": work_dirs(engine, RUN_PREFIX),
        "containers": sorted(f"{c['Names']} {c['State']}" for c in containers),
        "cgroup dirs": all_cgroup_dirs(engine.cgroup_parent),
        # a container's runsc processes name it in their command line
        "runsc processes": [p for c in containers for p in processes_mentioning("runsc", c["Id"])],
    }


def subprocess_leftovers(engine: ExecutionEngine) -> dict[str, list[str]]:
    from sandbox.subprocess_engine import RUN_PREFIX

    return {
        "work dirs": work_dirs(engine, RUN_PREFIX),
        # the program runs from its work dir under the state dir
        "processes": processes_mentioning(str(engine.config.state_dir)),
    }


LEFTOVERS: dict[str, Callable[[ExecutionEngine], dict[str, list[str]]]] = {
    "runsc": runsc_leftovers,
    "docker": docker_leftovers,
    "subprocess": subprocess_leftovers,
}


def leftovers(engine: ExecutionEngine) -> dict[str, list[str]]:
    return {k: v for k, v in LEFTOVERS[engine.name](engine).items() if v}


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


def make_request(code: str | bytes, **kwargs: Any) -> ExecRequest:
    limits = kwargs.pop("limits", None)
    limit_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in Limits.__dataclass_fields__}
    if limits is None:
        limits = Limits(**limit_kwargs)
    data = code.encode() if isinstance(code, str) else code
    return ExecRequest(files={"main.py": data}, limits=limits, **kwargs)


@pytest.fixture
def run(engine: ExecutionEngine) -> Callable[..., ExecResult]:
    """run(code, *, on_output=..., on_metrics=..., cancel=..., <ExecRequest fields>, <Limits fields>)."""

    def _run(code: str | bytes, **kwargs: Any) -> ExecResult:
        callbacks = {k: kwargs.pop(k) for k in ("on_output", "on_metrics", "cancel") if k in kwargs}
        return engine.execute(make_request(code, **kwargs), **callbacks)

    return _run


# A program with 6 processes at its peak (itself and 5 children) for about a second.
FIVE_CHILDREN = """
import os, time
children = []
for _ in range(5):
    pid = os.fork()
    if pid == 0:
        time.sleep(1.2)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
"""


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
