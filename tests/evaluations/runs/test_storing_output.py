"""The log store: a run reads only what was stored for it, whatever happened to ids before."""

from __future__ import annotations

from datetime import timedelta

from evaluations.models import Run, Submission
from evaluations.runs import logstore


def test_a_run_never_shows_output_an_earlier_run_with_its_id_stored(user, make_run, api_client) -> None:
    # A database restored (or recreated) under a log store that was kept: the id comes back.
    earlier = make_run(user, stdout=b"someone else's secret\n", stderr=b"theirs\n")
    run_id, queued_at = earlier.pk, earlier.queued_at
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
    assert again.pk == run_id and again.queued_at != queued_at

    assert logstore.log_read(again, "stdout") == b"" and logstore.log_read(again, "stderr") == b""
    body = api_client.get(f"/api/v1/runs/{run_id}/").json()
    assert (body["stdout"], body["stderr"]) == ("", "")


def test_what_a_run_stores_is_read_back_byte_exact(user, make_run) -> None:
    data = b"\x00\xff NUL and invalid UTF-8 \x1b[31m\n"
    run = make_run(user, stdout=data)

    assert logstore.log_read(run, "stdout") == data
    assert logstore.log_read(run, "stdout", offset=3, limit=4) == data[3:7]
    assert logstore.log_size(run, "stdout") == len(data)


def test_runs_queued_a_microsecond_apart_keep_apart(user, make_run) -> None:
    first = make_run(user, stdout=b"first\n")
    twin = Run(pk=first.pk, queued_at=first.queued_at + timedelta(microseconds=1))

    assert logstore.log_read(twin, "stdout") == b""
