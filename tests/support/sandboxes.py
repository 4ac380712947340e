"""What the runsc engine leaves on the machine, seen from outside: processes, cgroups, work dirs.

Every sandbox has an id `crucible-runsc-<hex>` that names its work dir (`<state dir>/<id>`, with the
code in `code/`), its cgroup (`/sys/fs/cgroup/[<controller>/]crucible/<id>`) and appears in the
command line of its `runsc`, `runsc-gofer` and `runsc-sandbox` processes. A test gives each stack a
state dir of its own, so "processes whose command line names the state dir" are that stack's.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

PREFIX = "crucible-runsc-"
CGROUP_ROOT = Path("/sys/fs/cgroup")
_ID = re.compile(re.escape(PREFIX) + r"[0-9a-f]+")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    state: str  # R, S, D, Z (a zombie: dead, not yet reaped), ...
    cmdline: str


def proc_info(pid: int) -> ProcInfo | None:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = stat.rpartition(")")[2].split()[:2]  # after "(comm)": state, ppid, ...
    return ProcInfo(pid, int(ppid), state, cmdline.strip())


def processes() -> list[ProcInfo]:
    """Every live process (zombies left out)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := proc_info(int(entry))) is not None and info.state != "Z":
            found.append(info)
    return found


def descendants(pid: int) -> list[ProcInfo]:
    """Live processes below `pid` in the process tree (in sessions of their own too)."""
    by_parent: dict[int, list[ProcInfo]] = {}
    for p in processes():
        by_parent.setdefault(p.ppid, []).append(p)
    found, todo = [], [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def sandbox_processes(state_dir: Path, sandbox_id: str | None = None) -> list[ProcInfo]:
    """Live (not zombie) processes of sandboxes under `state_dir` (of one sandbox if `sandbox_id`)."""
    needle = f"{state_dir}/{sandbox_id}" if sandbox_id else f"{state_dir}/{PREFIX}"
    return [p for p in processes() if needle in p.cmdline and p.pid != os.getpid()]


def running_sandbox_ids(state_dir: Path) -> set[str]:
    return {m.group(0) for p in sandbox_processes(state_dir) for m in _ID.finditer(p.cmdline)}


def sandboxes_running_code(state_dir: Path, marker: str) -> set[str]:
    """Ids of the sandboxes under `state_dir` with a process, whose code contains `marker`."""
    found = set()
    for sandbox_id in running_sandbox_ids(state_dir):
        for path in (state_dir / sandbox_id / "code").glob("*.py"):
            with contextlib.suppress(OSError):
                if marker in path.read_text(errors="replace"):
                    found.add(sandbox_id)
    return found


def launching_process(state_dir: Path, sandbox_id: str) -> ProcInfo | None:
    """The topmost process of the sandbox (`runsc run`): its parent is the process that started it."""
    procs = {p.pid: p for p in sandbox_processes(state_dir, sandbox_id)}
    tops = [p for p in procs.values() if p.ppid not in procs]
    return min(tops, key=lambda p: p.pid) if tops else None


def ancestor_with_parent(pid: int, parents: set[int]) -> int | None:
    """Walk up from `pid`: the first process whose parent is in `parents` (e.g. a Celery pool child)."""
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        info = proc_info(pid)
        if info is None:
            return None
        if info.ppid in parents:
            return pid
        pid = info.ppid
    return None


def cgroup_dirs(sandbox_id: str) -> list[Path]:
    """The sandbox's cgroup directories, in whichever hierarchy (v1 controllers or v2) has them."""
    found: list[Path] = []
    for depth in range(1, 5):
        found.extend(CGROUP_ROOT.glob("/".join(["*"] * (depth - 1) + [sandbox_id])))
    return [p for p in found if p.is_dir()]


def leftovers(state_dir: Path, sandbox_id: str) -> list[str]:
    """Everything of one sandbox still on the machine, described (empty: nothing is left)."""
    left = [f"process {p.pid}: {p.cmdline[:200]}" for p in sandbox_processes(state_dir, sandbox_id)]
    left += [f"cgroup {d}" for d in cgroup_dirs(sandbox_id)]
    if (state_dir / sandbox_id).exists():
        left.append(f"work dir {state_dir / sandbox_id}")
    return left


def kill_all(state_dir: Path) -> None:
    """Teardown: SIGKILL every sandbox process under `state_dir` and remove their empty cgroups."""
    ids = running_sandbox_ids(state_dir) | {p.name for p in state_dir.glob(PREFIX + "*")}
    for p in sandbox_processes(state_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
    for sandbox_id in ids:
        for d in sorted(cgroup_dirs(sandbox_id), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
