"""A run's stdout and stderr as one text, line by line in the order they were stored: the
"both" download of the run page. Chunks are read in the order of their rows (workers store
output within milliseconds of its being written, stdout before stderr within one batch), and
each stream's unfinished line waits for its end, so two streams never cut into each other's lines."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.db.models import F, Q

from evaluations.models import OutputChunk, Run
from evaluations.runs.words import size_words

READ_ROWS = 256  # rows (of at most a chunk each) per query, so a big log is streamed, not loaded


def chunks_after(run, have: dict[str, int], rows: int = READ_ROWS) -> list[tuple[str, int, bytes, datetime | None]]:
    """The next stored chunks (stream, offset, data, when stored) holding bytes past `have` (bytes
    per stream a reader has), in the order they were stored: for a reader of both streams at once."""
    wanted = Q()
    for stream, size in have.items():
        wanted |= Q(stream=stream, offset__gt=size - F("size"))  # ends after what the reader has
    chunks = OutputChunk.objects.filter(wanted, run_id=run.pk).order_by("pk")
    found = chunks.values_list("stream", "offset", "data", "created")[:rows]
    return [(stream, offset, bytes(data), created) for stream, offset, data, created in found]


def output_in_order(run: Run) -> Iterator[bytes]:
    partial = {"stdout": b"", "stderr": b""}
    last_id = 0
    while True:
        rows = list(
            OutputChunk.objects.filter(run_id=run.pk, pk__gt=last_id)
            .order_by("pk")
            .values_list("pk", "stream", "data")[:READ_ROWS]
        )
        if not rows:
            break
        for pk, stream, data in rows:
            last_id = pk
            text = partial[stream] + bytes(data)
            cut = text.rfind(b"\n") + 1
            if cut:
                yield text[:cut]
            partial[stream] = text[cut:]
    for stream in ("stdout", "stderr"):
        if partial[stream]:
            yield partial[stream] + b"\n"
        if getattr(run, f"{stream}_truncated"):
            written = size_words(getattr(run, f"{stream}_bytes"))
            kept = size_words(getattr(run, f"{stream}_limit_bytes"))
            yield f"[{stream} truncated: {written} written, first {kept} kept]\n".encode()
