"""The run page's "both" download: stdout and stderr as one text, lines in the order they were stored,
neither stream cutting into a line of the other; a truncated stream says so at the end."""

from __future__ import annotations

from django.utils import timezone

from evaluations.runs.logstore import RunLogWriter


def stored(run, *chunks: tuple[str, bytes]) -> None:
    writer = RunLogWriter(run)
    at = {"stdout": 0, "stderr": 0}
    for stream, data in chunks:
        writer.append(stream, at[stream], data)
        at[stream] += len(data)
    writer.close()


def download(client, run) -> tuple[int, bytes, str]:
    response = client.get(f"/runs/{run.pk}/output/")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, body, response.get("Content-Disposition", "")


def test_lines_of_both_streams_come_in_the_order_they_were_written(client, user, make_run) -> None:
    run = make_run(user, status="succeeded")
    stored(run, ("stdout", b"one\ntw"), ("stderr", b"warning\n"), ("stdout", b"o\nthree"), ("stderr", b"last words"))

    status, body, disposition = download(client, run)

    assert status == 200
    assert body == b"one\nwarning\ntwo\nthree\nlast words\n"
    assert disposition == f'attachment; filename="run-{run.pk}-output.log"'


def test_a_truncated_stream_ends_with_a_marker(client, user, make_run) -> None:
    run = make_run(user, status="failed", stdout_truncated=True, stdout_bytes=5 * 1024 * 1024, stdout_limit_bytes=1024)
    stored(run, ("stdout", b"x" * 1023 + b"\n"))

    body = download(client, run)[1]

    assert body.endswith(b"[stdout truncated: 5 MiB written, first 1 KiB kept]\n")


def test_expired_output_is_gone_with_a_page_that_says_so(client, user, make_run) -> None:
    run = make_run(user, status="succeeded", output_expired_at=timezone.now())

    status, body, _ = download(client, run)

    assert status == 410 and b"expired and was deleted" in body


def test_someone_elses_run_is_not_found(client, other_user, make_run) -> None:
    run = make_run(other_user, status="succeeded")

    assert download(client, run)[0] == 404
