"""Durable run output and metric samples, in the database every host reaches (OutputChunk, MetricBatch).

Workers store each batch of chunks at its byte offsets BEFORE publishing it (docs/live-runs.md); a
stream keeps at most its run's cap. Rows go with their run, so a run id used again never shows
another run's output.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Max, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from evaluations.models import MetricBatch, OutputChunk
from sandbox.contract import Stream

STREAMS = tuple(s.value for s in Stream)
# Bytes per stored row at most: a batch larger than this is cut into several rows of one INSERT.
CHUNK_BYTES = 64 * 1024


class StoredRun(Protocol):
    """What the store needs of a run (a Run row has all of it)."""

    pk: Any
    stdout_limit_bytes: int
    stderr_limit_bytes: int


def store_is_full(exc: BaseException | None) -> bool:
    """The database (or its disk) is out of space: PostgreSQL's class 53, SQLite's SQLITE_FULL, ENOSPC."""
    while exc is not None:
        if getattr(exc, "sqlstate", None) in ("53100", "53200", "53400") or getattr(exc, "errno", None) in (
            errno.ENOSPC,
            errno.EDQUOT,
        ):
            return True
        if "database or disk is full" in str(exc) or "No space left on device" in str(exc):
            return True
        exc = exc.__cause__
    return False


# PostgreSQL's classes of failures that pass: connection lost, shutting down or starting, too many
# connections, a serialization failure or deadlock.
_PASSING_SQLSTATES = ("08", "57P", "53300", "40001", "40P01")


def store_may_recover(exc: BaseException) -> bool:
    """A failure worth retrying: the database unreachable, restarting or busy; not full, not refusing
    the rows, not a schema that does not match (those stay)."""
    if not isinstance(exc, (OperationalError, InterfaceError)) or store_is_full(exc):
        return False
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate.startswith(_PASSING_SQLSTATES)
    if connection.vendor == "sqlite":
        return "locked" in str(exc)  # "no such column" and the like are OperationalErrors too
    return True  # no server answer at all: refused, reset, timed out


def _check_stream(stream: str) -> None:
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}")


def log_size(run: StoredRun, stream: str) -> int:
    _check_stream(stream)
    chunks = OutputChunk.objects.filter(run_id=run.pk, stream=stream)
    last = chunks.order_by("-offset").values_list("offset", "size").first()
    return last[0] + last[1] if last else 0


def log_read(run: StoredRun, stream: str, offset: int = 0, limit: int | None = None) -> bytes:
    """The stored bytes [offset, offset + limit) (to the end if limit is None); fewer at the end."""
    _check_stream(stream)
    if offset < 0 or (limit is not None and limit <= 0):
        return b""
    chunks = OutputChunk.objects.filter(run_id=run.pk, stream=stream)
    # From the chunk holding `offset` (the greatest offset <= it) to the last one starting before the
    # end: one query, both halves of it on the unique (run, stream, offset) index.
    holder = chunks.filter(offset__lte=offset).order_by("-offset").values("offset")[:1]
    rows = chunks.filter(offset__gte=Subquery(holder))
    if limit is not None:
        rows = rows.filter(offset__lt=offset + limit)
    out = bytearray()
    first = end = None
    for start, data in rows.order_by("offset").values_list("offset", "data"):
        if first is None:
            first = end = start
        if start != end:
            break  # a reader sees a prefix of the stream, never a gap (none is ever stored)
        out += data
        end = start + len(data)
    if first is None:
        return b""
    data = out[offset - first :]
    return bytes(data if limit is None else data[:limit])


def metrics_read(run: StoredRun, *, after: float | None = None) -> list[dict[str, Any]]:
    """The run's samples in order; only those with `t` > `after` if given."""
    batches = MetricBatch.objects.filter(run_id=run.pk)
    if after is not None:
        batches = batches.filter(last_t__gt=after)
    samples = [s for batch in batches.order_by("last_t", "pk").values_list("samples", flat=True) for s in batch]
    return samples if after is None else [s for s in samples if s["t"] > after]


def run_logs_delete(run: StoredRun) -> int:
    """Delete the run's output and samples; the bytes of output freed."""
    with transaction.atomic():
        freed = OutputChunk.objects.filter(run_id=run.pk).aggregate(n=Coalesce(Sum("size"), 0))["n"]
        OutputChunk.objects.filter(run_id=run.pk).delete()
        MetricBatch.objects.filter(run_id=run.pk).delete()
    return freed


@dataclass(frozen=True)
class StoreUsage:
    output_bytes: int  # bytes of output stored
    runs: int  # runs with stored output
    table_bytes: int | None  # what the two tables take in the database, indexes included (PostgreSQL only)


def store_usage() -> StoreUsage:
    """What the store holds. Sums every row: callers cache it (admin/selectors.py)."""
    totals = OutputChunk.objects.aggregate(n=Coalesce(Sum("size"), 0), last=Max("pk"))
    runs = OutputChunk.objects.values("run_id").distinct().count() if totals["last"] is not None else 0
    table_bytes = None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_total_relation_size(%s) + pg_total_relation_size(%s)",
                [OutputChunk._meta.db_table, MetricBatch._meta.db_table],
            )
            table_bytes = cursor.fetchone()[0]
    return StoreUsage(totals["n"], runs, table_bytes)


class RunLogWriter:
    """Stores one run's output and samples in batches; offsets are checked so a replay can trust
    them, and a stream keeps at most its cap (the pump stops the run there; this is the backstop).
    Not thread-safe: one thread (the publisher's flusher) stores a run's batches."""

    def __init__(self, run: StoredRun) -> None:
        self.run_id = self.pk = run.pk
        self.caps = {Stream.STDOUT.value: run.stdout_limit_bytes, Stream.STDERR.value: run.stderr_limit_bytes}
        # A run executes once (runs/lifecycle.py), but rows stored before are never written over. Read
        # on the first store, in the thread that stores (the publisher's), not the one that made this.
        self.sizes: dict[str, int] | None = None
        self.replaying = False  # the next batch may repeat bytes of one that failed (see store)

    def append(self, stream: str, offset: int, data: bytes) -> None:
        self.store([(stream, offset, data)], [])

    def append_metrics(self, sample: dict[str, Any]) -> None:
        self.store([], [sample])

    def store(
        self, chunks: Iterable[tuple[str, int, bytes]], samples: Sequence[dict[str, Any]]
    ) -> list[tuple[str, int, bytes]]:
        """Store chunks (stream, offset, data) and samples in one transaction: one INSERT of output
        rows (adjacent chunks of a stream merged), one of samples; returns the output kept, merged
        per stream. Raises ValueError on an offset that does not follow what was stored before
        (nothing is stored then), DatabaseError if the database fails: the same batch may then be
        stored again, and what of it was stored already is not stored twice."""
        rows: list[OutputChunk] = []
        if self.sizes is None:
            self.sizes = {stream: log_size(self, stream) for stream in STREAMS}
        if self.replaying and samples:
            last_t = MetricBatch.objects.filter(run_id=self.run_id).aggregate(t=Max("last_t"))["t"]
            samples = [s for s in samples if last_t is None or s["t"] > last_t]
        sizes = dict(self.sizes)
        kept: dict[str, tuple[int, bytearray]] = {}  # what the caller may publish
        fresh: dict[str, tuple[int, bytearray]] = {}  # what is not stored yet
        for stream, offset, data in chunks:
            _check_stream(stream)
            if self.replaying and sizes[stream] >= self.caps[stream]:
                sizes[stream] = max(sizes[stream], offset)  # past its cap a stream stores nothing to compare
            stored = sizes[stream] - offset if self.replaying and offset < sizes[stream] else 0
            if offset + stored != sizes[stream]:
                raise ValueError(f"{stream}: chunk at offset {offset}, but the stream has {sizes[stream]} bytes")
            # (stored > 0: a batch whose COMMIT landed before its connection broke stored these bytes.)
            sizes[stream] = max(sizes[stream], offset + len(data))
            room = max(0, self.caps[stream] - offset)
            if data[:room]:
                kept.setdefault(stream, (offset, bytearray()))[1].extend(data[:room])
            if data[stored:room]:
                fresh.setdefault(stream, (offset + stored, bytearray()))[1].extend(data[stored:room])
        now = timezone.now()
        for stream, (start, buffer) in fresh.items():
            for i in range(0, len(buffer), CHUNK_BYTES):
                part = bytes(buffer[i : i + CHUNK_BYTES])
                rows.append(
                    OutputChunk(
                        run_id=self.run_id, stream=stream, offset=start + i, size=len(part), data=part, created=now
                    )
                )
        kept_chunks = [(stream, start, bytes(buffer)) for stream, (start, buffer) in kept.items()]
        if not rows and not samples:
            self.sizes, self.replaying = sizes, False
            return kept_chunks
        try:
            with transaction.atomic():
                if rows:
                    OutputChunk.objects.bulk_create(rows)
                if samples:
                    MetricBatch.objects.create(run_id=self.run_id, last_t=samples[-1]["t"], samples=list(samples))
        except DatabaseError:
            # Committed or not, the caller may not know: re-read the sizes before storing again.
            self.sizes, self.replaying = None, True
            raise
        self.sizes, self.replaying = sizes, False
        return kept_chunks

    def close(self) -> None:
        pass  # nothing held open: every batch is committed when stored
