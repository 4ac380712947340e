"""Files the site's processes write (work dirs, run output, the database) are readable by their owner only."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def make_private(*, sqlite_database: str | None = None) -> None:
    """umask 077 for this process and its children; an SQLite database made before goes to 0600."""
    os.umask(0o077)
    if sqlite_database:
        # SQLite gives its -wal and -shm files the database file's mode.
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(sqlite_database + suffix).chmod(0o600)
