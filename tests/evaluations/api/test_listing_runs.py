"""GET /api/v1/runs/: pages of run summaries (status, limits, usage, byte counts, never the output),
newest first, walked with cursors; bad paging parameters are the caller's mistake, never a 500."""

from __future__ import annotations

import base64
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from evaluations.api.pagination import RUN_PAGE_SIZE, RUN_PAGE_SIZE_MAX
from evaluations.models import Run, RunStatus

RUNS = "/api/v1/runs/"
MiB = 1024 * 1024


def cursor_of(url: str) -> str:
    return parse_qs(urlparse(url).query)["cursor"][0]


def walk(api_client, **params) -> list[list[int]]:
    """Every page's run ids, following `next` from the first page to the last."""
    pages = []
    response = api_client.get(RUNS, params)
    while True:
        assert response.status_code == 200, response.content[:500]
        body = response.json()
        pages.append([run["id"] for run in body["results"]])
        if body["next"] is None:
            return pages
        response = api_client.get(body["next"])


def test_a_listed_run_carries_its_status_and_byte_counts_but_not_its_output(api_client, user, make_run) -> None:
    run = make_run(
        user,
        name="noisy",
        status=RunStatus.FAILED,
        reason="exit_code",
        exit_code=3,
        stdout=b"secret output\n",
        stderr=b"a warning\n",
        stdout_bytes=14,
        stderr_bytes=10,
        cpu_seconds=0.25,
    )

    listed = api_client.get(RUNS).json()["results"]

    assert [r["id"] for r in listed] == [run.pk]
    summary = listed[0]
    assert summary["url"] == f"http://testserver/runs/{run.pk}/"
    assert summary["api_url"] == f"http://testserver/api/v1/runs/{run.pk}/"
    assert summary["submission"] == {
        "id": run.submission_id,
        "name": "noisy",
        "owner": user.username,
        "shared_with_team": False,
    }
    assert (summary["status"], summary["reason"], summary["exit_code"]) == ("failed", "exit_code", 3)
    assert summary["usage"]["cpu_seconds"] == 0.25
    assert (summary["stdout_bytes"], summary["stderr_bytes"]) == (14, 10)
    assert summary["stdout_truncated"] is False and summary["stderr_truncated"] is False
    for absent in ("stdout", "stderr", "stdout_base64", "stderr_base64"):
        assert absent not in summary
    assert b"secret output" not in api_client.get(RUNS).content


def test_the_run_detail_still_carries_the_output(api_client, user, make_run) -> None:
    # Queued again after a worker was lost: the output of its first delivery is shown.
    run = make_run(user, stdout=b"kept \xff\n", stdout_bytes=7, deliveries=1)

    body = api_client.get(f"{RUNS}{run.pk}/").json()

    assert body["stdout"] == "kept \ufffd\n"
    assert base64.b64decode(body["stdout_base64"]) == b"kept \xff\n"
    assert body["submission"]["stdin_bytes"] == 0 and body["queue_position"] == 0


# The token (with its user and their role), the page of runs (with submissions and owners).
LIST_QUERIES = 2


def test_a_hundred_runs_with_a_mebibyte_of_output_each_list_in_under_100_kb_and_fixed_queries(
    api_client, user, make_run, django_assert_num_queries
) -> None:
    def add_runs(n: int) -> None:
        # Half of them queued: a queue position per run would be a query per run.
        for i in range(n):
            status = RunStatus.QUEUED if i % 2 else RunStatus.SUCCEEDED
            make_run(user, stdout=b"x" * MiB, stderr=b"e" * 1024, stdout_bytes=MiB, stderr_bytes=1024, status=status)

    def list_all():
        with django_assert_num_queries(LIST_QUERIES):
            response = api_client.get(RUNS, {"page_size": RUN_PAGE_SIZE_MAX})
        assert response.status_code == 200
        return response

    api_client.get(RUNS)  # the token's last use is written once a minute: not by the requests measured
    add_runs(10)
    assert len(list_all().json()["results"]) == 10
    add_runs(90)

    response = list_all()

    assert len(response.json()["results"]) == 100
    assert len(response.content) <= 100_000, len(response.content)


def test_the_list_does_not_load_the_submissions_code_or_archive(api_client, user, make_run) -> None:
    make_run(user, code="#" * MiB)

    with CaptureQueriesContext(connection) as queries:
        assert api_client.get(RUNS).status_code == 200

    page_query = next(q["sql"] for q in queries.captured_queries if "evaluations_run" in q["sql"])
    for column in ('"code"', '"archive"', '"stdin"'):
        assert column not in page_query, page_query


def test_pages_hold_fifty_runs_unless_asked_and_walk_every_run_once_newest_first(api_client, user, make_run) -> None:
    runs = [make_run(user) for _ in range(RUN_PAGE_SIZE + 7)]
    now = timezone.now()
    # Pairs queued in the same instant: a page boundary falls between runs of equal queued_at.
    for i, run in enumerate(runs):
        Run.objects.filter(pk=run.pk).update(queued_at=now - timedelta(seconds=i // 2))
    expected = [run.pk for i, run in sorted(enumerate(runs), key=lambda pair: (pair[0] // 2, -pair[1].pk))]

    pages = walk(api_client)

    assert [len(page) for page in pages] == [RUN_PAGE_SIZE, 7]
    assert [pk for page in pages for pk in page] == expected


def test_a_page_size_walks_the_list_in_pages_of_that_size(api_client, user, make_run) -> None:
    runs = [make_run(user) for _ in range(7)]
    now = timezone.now()
    for run in runs:  # all queued together: the id alone orders them
        Run.objects.filter(pk=run.pk).update(queued_at=now)

    pages = walk(api_client, page_size=3)

    newest_first = sorted((run.pk for run in runs), reverse=True)
    assert pages == [newest_first[0:3], newest_first[3:6], newest_first[6:]]


def test_runs_submitted_while_paging_do_not_shift_the_next_page(api_client, user, make_run) -> None:
    old = [make_run(user) for _ in range(4)]
    first = api_client.get(RUNS, {"page_size": 2}).json()

    make_run(user)  # newest: it belongs before the first page, not in the second
    second = api_client.get(first["next"]).json()

    ids = sorted((r.pk for r in old), reverse=True)
    assert [r["id"] for r in first["results"]] == ids[:2]
    assert [r["id"] for r in second["results"]] == ids[2:]


def test_previous_leads_back_to_the_page_before(api_client, user, make_run) -> None:
    for _ in range(5):
        make_run(user)
    first = api_client.get(RUNS, {"page_size": 2}).json()
    second = api_client.get(first["next"]).json()

    back = api_client.get(second["previous"]).json()

    assert first["previous"] is None
    assert [r["id"] for r in back["results"]] == [r["id"] for r in first["results"]]


def test_the_list_holds_only_runs_the_caller_may_see_on_every_page(api_client, user, other_user, make_run) -> None:
    mine = {make_run(user).pk for _ in range(3)}
    for _ in range(3):
        make_run(other_user)

    pages = walk(api_client, page_size=2)

    assert {pk for page in pages for pk in page} == mine


@pytest.mark.parametrize("page_size", ["0", "-1", str(RUN_PAGE_SIZE_MAX + 1), "abc", "1.5", "9" * 5000])
def test_a_page_size_out_of_range_answers_400_naming_the_range(api_client, user, make_run, page_size) -> None:
    make_run(user)

    response = api_client.get(RUNS, {"page_size": page_size})

    assert response.status_code == 400, response.content[:300]
    assert response.json()["page_size"] == [f"must be a whole number between 1 and {RUN_PAGE_SIZE_MAX}"]


def test_an_unknown_query_parameter_answers_400(api_client) -> None:
    response = api_client.get(RUNS, {"status": "running"})

    assert response.status_code == 400
    assert "unknown" in response.json()["status"][0]


def encoded_cursor(query: dict) -> str:
    return base64.b64encode(urlencode(query, doseq=True).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        base64.b64encode(b"\xff\xfe").decode(),
        encoded_cursor({"o": "x"}),  # an offset that is not a number
        encoded_cursor({"r": "maybe"}),
    ],
    ids=["not base64", "not text", "bad offset", "bad direction"],
)
def test_a_cursor_that_is_not_one_answers_404_invalid_cursor(api_client, user, make_run, cursor) -> None:
    make_run(user)

    response = api_client.get(RUNS, {"cursor": cursor})

    assert response.status_code == 404
    assert response.json()["detail"] == "Invalid cursor"


@pytest.mark.parametrize(
    "position",
    ["yesterday", "2026-13-45 99:99:99", "2026-01-01 00:00:00+99:00", "\x00", "9" * 500],
    ids=["a word", "impossible date", "impossible offset", "NUL", "digits"],
)
def test_a_cursor_whose_position_is_not_a_time_answers_400_not_500(api_client, user, make_run, position) -> None:
    make_run(user)

    response = api_client.get(RUNS, {"cursor": encoded_cursor({"p": position})})

    assert response.status_code == 400, response.content[:300]
    assert "detail" in response.json()


def test_a_cursor_longer_than_a_real_one_could_be_answers_400(api_client) -> None:
    response = api_client.get(RUNS, {"cursor": "A" * 1001})

    assert response.status_code == 400
    assert "cursor" in response.json()
