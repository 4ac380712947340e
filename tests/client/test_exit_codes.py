"""The exit codes `crucible` documents in client/README.md are the ones it uses (crucible/exitcodes.py)."""

from __future__ import annotations

import re
from pathlib import Path

from crucible import exitcodes

README = Path(__file__).resolve().parents[2] / "client" / "README.md"
REASONS = (
    "exit_code timeout memory_limit output_limit pids_limit disk_limit cancelled worker_lost sandbox_error "
    "rejected storage_error"
).split()  # the server's vocabulary (sandbox.Reason): the client does not import the server


def test_the_readme_table_gives_each_reason_the_code_the_command_exits_with():
    rows = dict(re.findall(r"^\| `(\w+)` \| \w* \| (\d+) \|$", README.read_text(), re.MULTILINE))

    assert {reason: int(code) for reason, code in rows.items()} == exitcodes.BY_REASON
    assert set(rows) == set(REASONS) - {"exit_code"}
    assert len(set(exitcodes.BY_REASON.values())) == len(exitcodes.BY_REASON)  # one code per reason


def test_a_run_that_ended_by_its_own_exit_passes_its_code_on():
    assert exitcodes.for_run("succeeded", None, 0) == 0
    assert exitcodes.for_run("failed", "exit_code", 3) == 3
    assert exitcodes.for_run("failed", "exit_code", -9) == 137  # killed by SIGKILL, as a shell says
    assert exitcodes.for_run("failed", "exit_code", 256) == 1  # never 0 for a failure
    assert exitcodes.for_run("failed", "timeout", None) == 111
    assert exitcodes.for_run("error", "a_reason_from_a_newer_server", None) == exitcodes.UNKNOWN_REASON
