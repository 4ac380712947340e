"""Durable run output and metric samples, through Django's Storage API (storages["logs"]).

Workers append each chunk at its byte offset BEFORE publishing it, so a reader that joins the live
stream and then reads the store misses nothing (docs/live-runs.md). Appending needs a local path
(FileSystemStorage.path); reading goes through storage.open, so another backend can serve reads.
"""

from __future__ import annotations

import json
import os
import threading
from typing import IO, Any

from django.core.files.storage import storages

STREAMS = ("stdout", "stderr")


def _storage():
    return storages["logs"]


def log_name(run_id: int, stream: str) -> str:
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}")
    return f"runs/{run_id}/{stream}.log"


def metrics_name(run_id: int) -> str:
    return f"runs/{run_id}/metrics.jsonl"


def log_size(run_id: int, stream: str) -> int:
    storage = _storage()
    name = log_name(run_id, stream)
    return storage.size(name) if storage.exists(name) else 0


def log_read(run_id: int, stream: str, offset: int = 0, limit: int | None = None) -> bytes:
    storage = _storage()
    name = log_name(run_id, stream)
    if not storage.exists(name):
        return b""
    with storage.open(name, "rb") as f:
        f.seek(offset)
        return f.read() if limit is None else f.read(limit)


def metrics_read(run_id: int) -> list[dict[str, Any]]:
    storage = _storage()
    name = metrics_name(run_id)
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


def run_logs_delete(run_id: int) -> None:
    storage = _storage()
    for name in [log_name(run_id, s) for s in STREAMS] + [metrics_name(run_id)]:
        if storage.exists(name):
            storage.delete(name)


class RunLogWriter:
    """Appends one run's output and samples; offsets are checked so a replay can trust them."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        storage = _storage()
        run_logs_delete(run_id)  # a re-delivered run starts its logs afresh
        self._files: dict[str, IO[bytes]] = {}
        for name in [*STREAMS, "metrics"]:
            rel = metrics_name(run_id) if name == "metrics" else log_name(run_id, name)
            path = storage.path(rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._files[name] = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def append(self, stream: str, offset: int, data: bytes) -> None:
        with self._lock:
            f = self._files[stream]
            if f.tell() != offset:
                raise ValueError(f"{stream}: chunk at offset {offset}, but {f.tell()} bytes are stored")
            f.write(data)

    def append_metrics(self, sample: dict[str, Any]) -> None:
        with self._lock:
            self._files["metrics"].write(json.dumps(sample).encode() + b"\n")

    def close(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.close()
