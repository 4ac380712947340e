"""The log store's disk fills (a 4 MiB tmpfs as CRUCIBLE_LOGS_DIR, mostly taken by another file):
a run printing more than fits ends error/storage_error with a detail that says the disk is full,
the worker lives on, and once the space is freed the next run succeeds."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.faults.support import program

pytestmark = pytest.mark.faults

DISK_BYTES = 4 * 1024 * 1024
FREE_BYTES = 256 * 1024


def test_a_run_that_fills_the_log_disk_ends_as_storage_error_and_the_next_succeeds(faults, tmp_path):
    logs_dir = tmp_path / "logs-disk"
    logs_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(logs_dir)], check=True)
    faults.cleanup(subprocess.run, ["umount", "-l", str(logs_dir)])  # after the stack has stopped
    filler = logs_dir / "other-files"
    filler.write_bytes(b"\0" * (DISK_BYTES - FREE_BYTES))
    faults.env["CRUCIBLE_LOGS_DIR"] = str(logs_dir)
    stack = faults.stack(workers=1)

    big = faults.api.submit(program('import sys\nfor i in range(800):\n    sys.stdout.write("x" * 999 + "\\n")\n'))
    run = faults.api.wait(big, timeout=60)
    assert (run["status"], run["reason"]) == ("error", "storage_error"), run
    assert re.search(r"full|no space", run["detail"], re.IGNORECASE), run["detail"]
    assert stack.worker is not None and stack.worker.running(), faults.logs()

    filler.unlink()
    small = faults.api.submit(program('print("fits")\n'))
    run = faults.api.wait(small, timeout=60)
    assert (run["status"], run["stdout"]) == ("succeeded", "fits\n"), run
    faults.check_end_state()
