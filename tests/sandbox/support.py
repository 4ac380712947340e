"""Helpers the sandbox/ tests share: requests, engine names, and what a run may leave behind.

Fixtures are in conftest.py; this module is imported as `tests.sandbox.support`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox import cgroups
from sandbox.contract import ExecRequest, Limits
from sandbox.engine import _ENGINES, ExecutionEngine, engine_names

REPO_ROOT = Path(__file__).resolve().parents[2]


def _registered(name: str) -> bool:
    return name in engine_names() and importlib.util.find_spec(_ENGINES[name].partition(":")[0]) is not None


# Every engine the conformance suite runs against: those registered whose module exists.
ENGINE_NAMES = [name for name in ("runsc", "docker", "subprocess") if _registered(name)]


def make_request(code: str | bytes, **kwargs: Any) -> ExecRequest:
    """An ExecRequest running `code` as main.py; keyword arguments are ExecRequest or Limits fields."""
    limits = kwargs.pop("limits", None)
    limit_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in Limits.__dataclass_fields__}
    if limits is None:
        limits = Limits(**limit_kwargs)
    data = code.encode() if isinstance(code, str) else code
    return ExecRequest(files={"main.py": data}, limits=limits, **kwargs)


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


def remove_cgroup_parent(parent: str) -> None:
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


def work_dirs(engine: ExecutionEngine, prefix: str) -> list[str]:
    state_dir = engine.config.state_dir
    return sorted(p.name for p in state_dir.iterdir() if p.name.startswith(prefix)) if state_dir.is_dir() else []


def runsc_leftovers(engine: ExecutionEngine) -> dict[str, list[str]]:
    from sandbox.runsc import RUN_PREFIX, RunscEngine

    assert isinstance(engine, RunscEngine)
    # A warm launcher's work dir and cgroup are the next run's, made before it (sandbox/launcher.py),
    # and a pooled sandbox's runsc too (sandbox/pool.py); test_runsc_engine.py and
    # test_pooled_sandboxes.py check that close() and the engine's death end them.
    warm = engine.warm_run_ids()
    return {
        "work dirs": [d for d in work_dirs(engine, RUN_PREFIX) if d not in warm],
        "cgroups": [c for c in cgroups.leftover_names(engine.config.cgroup_parent) if c not in warm],
        "cgroup dirs": [d for d in run_cgroup_dirs(engine.config.cgroup_parent) if Path(d).name not in warm],
        "runsc processes": [
            p for p in processes_mentioning("runsc", str(engine.config.state_dir)) if not any(w in p for w in warm)
        ],
    }


def docker_leftovers(engine: ExecutionEngine) -> dict[str, list[str]]:
    from sandbox.docker.engine import LABEL_STATE_DIR, RUN_PREFIX, DockerEngine

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
        # the program runs from its work dir under the state dir (where the runsc engine's pooled
        # sandboxes, named otherwise, may be waiting too)
        "processes": processes_mentioning(str(engine.config.state_dir / RUN_PREFIX)),
    }


LEFTOVERS: dict[str, Callable[[ExecutionEngine], dict[str, list[str]]]] = {
    "runsc": runsc_leftovers,
    "docker": docker_leftovers,
    "subprocess": subprocess_leftovers,
}


def leftovers(engine: ExecutionEngine) -> dict[str, list[str]]:
    return {k: v for k, v in LEFTOVERS[engine.name](engine).items() if v}
