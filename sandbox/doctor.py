"""Self-check: can this machine really run sandboxes? Used by `python -m sandbox doctor`,
`manage.py doctor` and the Django system check (`manage.py check --deploy --tag sandbox`)."""

from __future__ import annotations

import time

from sandbox.contract import ExecRequest, Status
from sandbox.engine import ExecutionEngine, Finding
from sandbox.errors import SandboxError


def diagnose(engine: ExecutionEngine, *, run: bool = True) -> list[Finding]:
    """Each step's outcome; stops at the first failure (later steps depend on it)."""
    findings: list[Finding] = []
    try:
        engine.check()
    except SandboxError as exc:
        return [Finding("engine", False, f"{engine.name}: {exc}")]
    platform = engine.platform()
    found = [engine.name, engine.runtime_version(), f"platform={platform}" if platform else ""]
    findings.append(Finding("engine", True, " ".join(part for part in found if part)))
    for finding in engine.host_findings():
        findings.append(finding)
        if not finding.ok:
            return findings
    if not run:
        return findings
    started = time.monotonic()
    try:
        result = engine.execute(ExecRequest(files={"main.py": b"print(1)"}))
    except SandboxError as exc:
        findings.append(Finding("run", False, f"print(1) could not run: {exc}"))
        return findings
    took = time.monotonic() - started
    good = result.status is Status.SUCCEEDED and result.stdout.data == b"1\n"
    boot = result.timings.boot_seconds
    text = (
        f"print(1) -> {result.status.value} in {took * 1000:.0f} ms"
        f"{f' (boot {boot * 1000:.0f} ms)' if boot is not None else ''}; image {result.image_digest[:19]}"
        f"{'' if good else ': ' + result.detail}"
    )
    findings.append(Finding("run", good, text))
    return findings
