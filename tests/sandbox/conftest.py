"""Fixtures for the sandbox/ tests: the real image, a real runsc engine, and a run helper.

Nothing here mocks runsc. If runsc (or the image, or cgroups) is missing, the session fixture
raises the engine's own error, so every engine test *fails* with the message saying how to fix it
instead of silently skipping.
"""

from __future__ import annotations

import os
import sys
import tempfile
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
from sandbox.engine import EngineConfig, ExecutionEngine, get_engine  # noqa: E402
from sandbox.images import Image, build_image, default_recipes, host_suite  # noqa: E402


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
def engine(image: Image, images_dir: Path, state_dir: Path, cgroup_parent: str) -> Iterator[ExecutionEngine]:
    config = EngineConfig(images_dir=images_dir, state_dir=state_dir, cgroup_parent=cgroup_parent)
    eng = get_engine("runsc", config)
    eng.check()  # raises EngineUnavailable (with the install hint) when runsc is missing
    yield eng
    eng.sweep()
    _remove_cgroup_parent(cgroup_parent)


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
