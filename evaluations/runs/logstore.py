"""Durable run output and metric samples, through Django's Storage API (storages["logs"]).

Workers append each chunk at its byte offset BEFORE publishing it (docs/live-runs.md). A run's files
are named after its id and the moment it was queued, so no run ever reads bytes that another run
with the same id wrote (a database restored, or recreated, under a store that was kept).
"""

from __future__ import annotations

import errno
import json
import os
import threading
from datetime import datetime
from typing import IO, Any, Protocol

from django.core.files.storage import storages

from sandbox.contract import Stream

STREAMS = tuple(s.value for s in Stream)


class StoredRun(Protocol):
    """What the store needs of a run (a Run row has both)."""

    pk: Any
    queued_at: datetime


def _storage():
    return storages["logs"]


def _run_dir(run: StoredRun) -> str:
    queued = round(run.queued_at.timestamp() * 1_000_000)
    return f"runs/{run.pk}-{queued}"


def log_name(run: StoredRun, stream: str) -> str:
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}")
    return f"{_run_dir(run)}/{stream}.log"


def metrics_name(run: StoredRun) -> str:
    return f"{_run_dir(run)}/metrics.jsonl"


def log_size(run: StoredRun, stream: str) -> int:
    storage = _storage()
    name = log_name(run, stream)
    return storage.size(name) if storage.exists(name) else 0


def log_read(run: StoredRun, stream: str, offset: int = 0, limit: int | None = None) -> bytes:
    storage = _storage()
    name = log_name(run, stream)
    if not storage.exists(name):
        return b""
    with storage.open(name, "rb") as f:
        f.seek(offset)
        return f.read() if limit is None else f.read(limit)


def metrics_read(run: StoredRun) -> list[dict[str, Any]]:
    storage = _storage()
    name = metrics_name(run)
    if not storage.exists(name):
        return []
    samples = []
    with storage.open(name, "rb") as f:
        for line in f.read().splitlines():
            try:
                samples.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a worker that died mid-write
    return samples


def run_logs_delete(run: StoredRun) -> None:
    storage = _storage()
    for name in [log_name(run, s) for s in STREAMS] + [metrics_name(run)]:
        if storage.exists(name):
            storage.delete(name)


class RunLogWriter:
    """Appends one run's output and samples; offsets are checked so a replay can trust them."""

    def __init__(self, run: StoredRun) -> None:
        self.run_id = run.pk
        storage = _storage()  # a run executes once (runs/lifecycle.py): there is nothing to start afresh
        self._files: dict[str, IO[bytes]] = {}
        for name in [*STREAMS, "metrics"]:
            rel = metrics_name(run) if name == "metrics" else log_name(run, name)
            path = storage.path(rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._files[name] = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def append(self, stream: str, offset: int, data: bytes) -> None:
        with self._lock:
            f = self._files[stream]
            if f.tell() != offset:
                raise ValueError(f"{stream}: chunk at offset {offset}, but {f.tell()} bytes are stored")
            _write_all(f, data)

    def append_metrics(self, sample: dict[str, Any]) -> None:
        with self._lock:
            _write_all(self._files["metrics"], json.dumps(sample).encode() + b"\n")

    def close(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.close()


def _write_all(f: IO[bytes], data: bytes) -> None:
    # An unbuffered write may be short (e.g. as the disk fills); the next one raises the OSError.
    view = memoryview(data)
    while view:
        written = f.write(view)
        if not written:
            raise OSError(errno.EIO, "the log store wrote nothing")
        view = view[written:]
