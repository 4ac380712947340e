"""The log store's disk fills: the output table lives in a PostgreSQL tablespace on a 4 MiB tmpfs,
mostly taken by another file. A run printing more than fits ends error/storage_error with a detail
that says the store is full, the worker lives on, and once the space is freed the next run succeeds."""

from __future__ import annotations

import pwd
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.faults.support import program

pytestmark = pytest.mark.faults

DISK_BYTES = 4 * 1024 * 1024
FREE_BYTES = 256 * 1024
OUTPUT_TABLE = "evaluations_outputchunk"


def test_a_run_that_fills_the_log_disk_ends_as_storage_error_and_the_next_succeeds(faults):
    disk = Path(tempfile.mkdtemp(prefix="crucible-small-disk-"))  # not under pytest's 0700 root
    owner = pwd.getpwnam(faults.pg.os_user)
    options = f"size={DISK_BYTES},uid={owner.pw_uid},gid={owner.pw_gid},mode=0700"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)], check=True)
    faults.cleanup(disk.rmdir)
    faults.cleanup(subprocess.run, ["umount", "-l", str(disk)])  # after the tablespace is dropped
    space = f"small_{faults.db_name}"
    faults.pg.execute(f"CREATE TABLESPACE {space} LOCATION '{disk}'")
    faults.cleanup(faults.pg.execute, f"DROP TABLESPACE IF EXISTS {space}")
    faults.sql(f"ALTER TABLE {OUTPUT_TABLE} SET TABLESPACE {space}")  # with its TOAST table
    faults.cleanup(faults.sql, f"ALTER TABLE {OUTPUT_TABLE} SET TABLESPACE pg_default")  # once stopped
    filler = disk / "other-files"
    filler.write_bytes(b"\0" * (DISK_BYTES - FREE_BYTES))
    stack = faults.stack(workers=1)

    # Random bytes: PostgreSQL compresses what it stores, and 800 KB of one letter would fit.
    big = faults.api.submit(
        program("import os, sys\nfor i in range(800):\n    sys.stdout.buffer.write(os.urandom(1000))\n")
    )
    run = faults.api.wait(big, timeout=60)
    assert (run["status"], run["reason"]) == ("error", "storage_error"), run
    assert re.search(r"full|no space", run["detail"], re.IGNORECASE), run["detail"]
    assert stack.worker is not None and stack.worker.running(), faults.logs()

    filler.unlink()
    small = faults.api.submit(program('print("fits")\n'))
    run = faults.api.wait(small, timeout=60)
    assert (run["status"], run["stdout"]) == ("succeeded", "fits\n"), run
    faults.check_end_state()
