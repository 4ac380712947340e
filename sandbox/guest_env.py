"""What a sandboxed program finds at start-up, whatever the engine: its environment and our guest files."""

from __future__ import annotations

from pathlib import Path

from sandbox.contract import ExecRequest

# Files of ours that the sandboxed interpreter loads at start-up (read-only inside).
GUEST_DIR = Path(__file__).resolve().parent / "guest"
GUEST_MOUNT = "/opt/crucible"


def guest_environment(request: ExecRequest, *, home: str = "/tmp", guest_dir: str = GUEST_MOUNT) -> dict[str, str]:
    """The program's whole environment: fixed variables plus the request's own, never the worker's.

    `home` is where HOME and TMPDIR point, `guest_dir` where the engine makes GUEST_DIR visible.
    """
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": guest_dir,  # sitecustomize.py: complete writes to stdout/stderr
    }
    env.update(request.env)
    return env
