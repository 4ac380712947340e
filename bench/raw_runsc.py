"""The benchmarks' baseline: a foreground `runsc run` of the engine's own bundle, with no engine.

The rootfs, OCI spec and runsc flags are the engine's (sandbox.runsc), so the baseline follows any
change to them. Imports `sandbox`: its importers put the repository ahead of bench/ on sys.path.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from common import BenchError

from sandbox import cgroups
from sandbox.contract import ExecRequest, Limits
from sandbox.gvisor import SENTRY_OVERHEAD_BYTES
from sandbox.images import DEFAULT_IMAGE, image_named
from sandbox.runsc import RunscEngine, oci_spec

# How runsc joins a cgroup when nothing joined it beforehand (the engine's cold start, and what it
# did for every run before sandbox/launcher.py): the `sh` joins, then becomes runsc.
JOIN_CGROUP = 'for f in $CRUCIBLE_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; exec "$@"'


class RawRunsc:
    """A bundle (config.json + code/) of its own, reused by every run; a fresh --root and id per run.

    One instance per thread: runs of one instance never overlap.
    """

    _ids = itertools.count(1)

    def __init__(self, engine: RunscEngine, work: Path, code: str, expected: bytes) -> None:
        self.engine = engine
        self.expected = expected
        image = image_named(engine.config.images_dir, DEFAULT_IMAGE)
        self.work = work
        self.bundle = work / "bundle"
        code_dir = self.bundle / "code"
        code_dir.mkdir(parents=True, mode=0o755)
        (code_dir / "main.py").write_text(code)
        (code_dir / "main.py").chmod(0o644)
        self.bundle.chmod(0o711)  # the gofer reads code/ on the sandbox's behalf, as in the engine
        request = ExecRequest(files={"main.py": code.encode()})
        (self.bundle / "config.json").write_text(json.dumps(oci_spec(request, image.rootfs, code_dir)))

    def command(self, root: Path, *args: str) -> list[str]:
        runsc, *flags = self.engine.runsc_flags()  # the binary, platform and flags the engine uses
        return [runsc, "--root", str(root), *flags, *args]

    def sample(self, cgroup_parent: str | None = None, *, via_sh: bool = False) -> tuple[float, float]:
        """(run + delete, run only) in seconds.

        With `cgroup_parent`, runsc runs in a cgroup made as the engine makes its own (same limits,
        joined through the same `sh -c`); creating and removing it is not timed. With `via_sh`
        alone, runsc is started through that `sh -c` but joins no cgroup.
        """
        n = next(self._ids)
        cid = f"cbench-{os.getpid()}-{n}"
        root = self.work / f"r{n}"
        root.mkdir(mode=0o700)
        cmd = self.command(root, "run", "--bundle", str(self.bundle), cid)
        env = None
        cgroup = None
        if cgroup_parent is not None:
            limits = Limits()
            cgroup = cgroups.RunCgroup(cgroup_parent, cid)
            cgroup.create(memory_bytes=limits.memory_bytes + SENTRY_OVERHEAD_BYTES, cpu_cores=limits.cpu_cores)
        if cgroup is not None or via_sh:
            procs = " ".join(cgroup.procs_files) if cgroup is not None else ""
            cmd = ["/bin/sh", "-c", JOIN_CGROUP, "sh", *cmd]
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CRUCIBLE_CGROUP_PROCS": procs}
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=env)
        ran = time.perf_counter()
        subprocess.run(self.command(root, "delete", "--force", cid), capture_output=True)
        end = time.perf_counter()
        if cgroup is not None:
            cgroup.remove()
        shutil.rmtree(root, ignore_errors=True)
        if proc.returncode != 0 or proc.stdout != self.expected:
            raise BenchError(
                f"runsc run: exit {proc.returncode}, stdout {proc.stdout!r}, stderr {proc.stderr[-2000:]!r}"
            )
        return end - start, ran - start
