"""The log store (rows in the database): byte-exact, read from any offset across chunk borders with no
gap and no duplicate, capped per stream, readable while a worker writes, and a run reads only its own."""

from __future__ import annotations

import random
import threading

import pytest
from django.db import connection

from evaluations.models import OutputChunk, Run, Submission
from evaluations.runs import logstore

# Every byte value, NUL, lone surrogates' and overlong UTF-8 encodings, a BOM, terminal escapes.
HOSTILE = bytes(range(256)) + b"\x00\x00\xed\xa0\x80\xc0\xaf\xef\xbb\xbf\x1b[2J\x1b]0;title\x07\r\n\xff\xfe"


def test_a_run_never_shows_output_an_earlier_run_with_its_id_stored(user, make_run, api_client) -> None:
    # A database restored (or recreated) after a run was deleted: the id comes back.
    earlier = make_run(user, stdout=b"someone else's secret\n", stderr=b"theirs\n")
    run_id = earlier.pk
    Submission.objects.filter(pk=earlier.submission_id).delete()
    submission = Submission.objects.create(owner=user, name="new", code="print(1)\n")
    again = Run.objects.create(
        pk=run_id,
        submission=submission,
        wall_seconds=1,
        memory_bytes=earlier.memory_bytes,
        stdout_limit_bytes=1024,
        stderr_limit_bytes=1024,
    )

    assert logstore.log_read(again, "stdout") == b"" and logstore.log_read(again, "stderr") == b""
    body = api_client.get(f"/api/v1/runs/{run_id}/").json()
    assert (body["stdout"], body["stderr"]) == ("", "")


def test_hostile_bytes_are_read_back_byte_exact(user, make_run, api_client) -> None:
    run = make_run(user, stdout=HOSTILE, stderr=HOSTILE[::-1])

    assert logstore.log_read(run, "stdout") == HOSTILE
    assert logstore.log_read(run, "stderr") == HOSTILE[::-1]
    assert logstore.log_read(run, "stdout", offset=3, limit=4) == HOSTILE[3:7]
    assert logstore.log_size(run, "stdout") == len(HOSTILE)
    response = api_client.get(f"/api/v1/runs/{run.pk}/logs/?stream=stdout&offset=250")
    assert b"".join(response.streaming_content if response.streaming else [response.content]) == HOSTILE[250:]


def test_any_offset_and_limit_reads_exactly_those_bytes_across_chunk_borders(user, make_run) -> None:
    run = make_run(user)
    writer = logstore.RunLogWriter(run)
    rng = random.Random(14)
    data = bytes(rng.randrange(256) for _ in range(3000))
    offset = 0
    while offset < len(data):  # chunks of 1 to 200 bytes, each stored on its own (its own row)
        size = rng.randint(1, 200)
        writer.append("stdout", offset, data[offset : offset + size])
        offset += size
    assert OutputChunk.objects.filter(run=run).count() > 20

    for start in [0, 1, 199, 200, 201, *rng.sample(range(len(data) + 5), 60)]:
        for limit in [None, 1, 7, 64, 1000, 5000]:
            expected = data[start:] if limit is None else data[start : start + limit]
            assert logstore.log_read(run, "stdout", start, limit) == expected, (start, limit)
    # A client resuming from wherever it stopped gets every byte once.
    got, sent = bytearray(), 0
    while chunk := logstore.log_read(run, "stdout", sent, rng.randint(1, 300)):
        got += chunk
        sent += len(chunk)
    assert bytes(got) == data


def test_a_batch_is_one_row_per_stream_and_its_offsets_must_follow_on(user, make_run) -> None:
    run = make_run(user)
    writer = logstore.RunLogWriter(run)

    stored = writer.store([("stdout", 0, b"a"), ("stderr", 0, b"E"), ("stdout", 1, b"bc")], [{"t": 0.5}])

    assert sorted(stored) == [("stderr", 0, b"E"), ("stdout", 0, b"abc")]
    assert OutputChunk.objects.filter(run=run).count() == 2
    with pytest.raises(ValueError, match="offset 7, but the stream has 4 bytes"):
        writer.store([("stdout", 3, b"d"), ("stdout", 7, b"gap")], [])
    assert logstore.log_read(run, "stdout") == b"abc"  # nothing of the refused batch was stored
    assert logstore.metrics_read(run) == [{"t": 0.5}]
    with pytest.raises(ValueError, match="offset 0, but the stream has 3 bytes"):
        logstore.RunLogWriter(run).append("stdout", 0, b"again")  # stored rows are never written over


def test_a_stream_keeps_at_most_its_cap(user, make_run) -> None:
    run = make_run(user, stdout_limit_bytes=1000, stderr_limit_bytes=10)
    writer = logstore.RunLogWriter(run)

    stored = writer.store([("stdout", 0, b"x" * 999), ("stdout", 999, b"yz"), ("stderr", 0, b"e" * 64)], [])
    writer.append("stdout", 1001, b"more")

    assert logstore.log_read(run, "stdout") == b"x" * 999 + b"y"
    assert logstore.log_size(run, "stderr") == 10
    assert sorted(stored) == [("stderr", 0, b"e" * 10), ("stdout", 0, b"x" * 999 + b"y")]  # what is published


def test_a_batch_stored_again_after_a_failure_stores_no_byte_or_sample_twice(user, make_run) -> None:
    run = make_run(user, stdout_limit_bytes=6)
    writer = logstore.RunLogWriter(run)
    writer.store([("stdout", 0, b"ab")], [{"t": 0.5}])
    # The state a failed store leaves (its COMMIT may have landed): the next batch repeats the last one.
    writer.sizes, writer.replaying = None, True

    stored = writer.store([("stdout", 0, b"ab"), ("stdout", 2, b"cdefgh")], [{"t": 0.5}, {"t": 1.0}])
    writer.append("stdout", 8, b"past the cap")

    assert stored == [("stdout", 0, b"abcdef")]  # published whole: the repeated bytes were never sent
    assert logstore.log_read(run, "stdout") == b"abcdef"
    assert [s["t"] for s in logstore.metrics_read(run)] == [0.5, 1.0]
    with pytest.raises(ValueError, match="offset 9, but the stream has 20 bytes"):
        writer.append("stdout", 9, b"behind")


def test_metric_samples_are_read_in_order_and_after_a_time(user, make_run) -> None:
    run = make_run(user)
    writer = logstore.RunLogWriter(run)
    writer.store([], [{"t": 0.5}, {"t": 1.0}])
    writer.store([], [{"t": 1.5}])

    assert [s["t"] for s in logstore.metrics_read(run)] == [0.5, 1.0, 1.5]
    assert [s["t"] for s in logstore.metrics_read(run, after=0.5)] == [1.0, 1.5]
    assert logstore.metrics_read(run, after=1.5) == []


@pytest.mark.django_db(transaction=True)
def test_a_reader_sees_a_growing_prefix_while_a_worker_writes(user, make_run) -> None:
    run = make_run(user, stdout_limit_bytes=1 << 20)
    data = bytes(random.Random(7).randrange(256) for _ in range(200_000))
    done = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            writer = logstore.RunLogWriter(run)
            for offset in range(0, len(data), 997):
                writer.append("stdout", offset, data[offset : offset + 997])
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            connection.close()
            done.set()

    threading.Thread(target=write).start()
    got = bytearray()
    reads = 0
    while True:
        finished = done.is_set()  # before the read: the writer may store its last bytes meanwhile
        chunk = logstore.log_read(run, "stdout", len(got), 4096)
        assert chunk == data[len(got) : len(got) + len(chunk)]  # never a gap, never a byte twice
        got += chunk
        reads += 1
        if finished and not chunk:
            break
    assert not failures, failures
    assert bytes(got) == data and reads > 10


def test_a_schema_or_row_error_is_not_retried_as_if_the_database_were_away(user, make_run) -> None:
    from django.db import DatabaseError, transaction

    run = make_run(user)
    errors = []
    for sql in ("SELECT no_such_column FROM evaluations_run", "INSERT INTO evaluations_outputchunk (id) VALUES (1)"):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql)
        except DatabaseError as exc:
            errors.append(exc)
    logstore.RunLogWriter(run).append("stdout", 0, b"x")
    with pytest.raises(DatabaseError) as twice:
        with transaction.atomic():
            OutputChunk.objects.create(run=run, stream="stdout", offset=0, size=1, data=b"x")

    assert len(errors) == 2
    assert not any(logstore.store_may_recover(exc) for exc in [*errors, twice.value])
