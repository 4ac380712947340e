"""What both gVisor engines (runsc, docker) give a sandbox alike: its user, command line and headroom."""

from __future__ import annotations

from sandbox.contract import ExecRequest, MiB

SANDBOX_UID = 65534  # nobody
# Where the request's files are mounted read-only; the program runs with this as its cwd.
CODE_MOUNT = "/code"
# The sentry and gofer live in the run's cgroup and use memory of their own; without this headroom
# a small memory limit would kill the sandbox before user code allocates anything.
SENTRY_OVERHEAD_BYTES = 32 * MiB


def python_command(request: ExecRequest) -> list[str]:
    """The program's command line inside the sandbox: the image's python3, unbuffered, on the entry point."""
    return ["/usr/bin/python3", "-u", f"{CODE_MOUNT}/{request.entrypoint}", *request.argv]
