"""The run list and run pages: own runs only, and hostile output shown as inert text."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from evaluations.models import Run, RunStatus


def test_the_run_page_shows_my_run(client, user, make_run) -> None:
    run = make_run(user, name="mine", status=RunStatus.SUCCEEDED, exit_code=0, stdout=b"hello\n")

    response = client.get(f"/runs/{run.pk}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert f"Run #{run.pk} · mine" in html
    assert 'data-status="succeeded"' in html
    # The output itself reaches the page over the websocket replay, never inlined in the HTML.
    assert "hello\n" not in html
    assert f'"logs_url": "/api/v1/runs/{run.pk}/logs/"' in html


def test_another_users_run_page_is_not_found(client, other_user, make_run) -> None:
    theirs = make_run(other_user, code="print('their secret')")

    response = client.get(f"/runs/{theirs.pk}/")

    assert response.status_code == 404
    assert "their secret" not in response.content.decode()


def test_an_unfinished_run_page_refreshes_itself_and_a_finished_one_does_not(client, user, make_run) -> None:
    queued = make_run(user)
    done = make_run(user, status=RunStatus.SUCCEEDED)

    assert 'http-equiv="refresh"' in client.get(f"/runs/{queued.pk}/").content.decode()
    assert 'http-equiv="refresh"' not in client.get(f"/runs/{done.pk}/").content.decode()


def test_hostile_output_never_reaches_the_html_and_downloads_as_inert_bytes(client, user, make_run) -> None:
    stdout = b"<script>alert(1)</script>\nnul:\x00 esc:\x1b[31mred\x1b[0m bad:\xff\xfe\n"
    stderr = b"</pre><img src=x onerror=alert(2)>"
    run = make_run(user, status=RunStatus.SUCCEEDED, stdout=stdout, stderr=stderr)

    html = client.get(f"/runs/{run.pk}/").content.decode()
    logs = client.get(f"/api/v1/runs/{run.pk}/logs/?stream=stdout&download=1")

    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert logs.content == stdout
    assert logs["Content-Type"] == "application/octet-stream"
    assert logs["X-Content-Type-Options"] == "nosniff"
    assert logs["Content-Disposition"] == f'attachment; filename="run-{run.pk}-stdout.log"'


def test_the_run_page_escapes_the_code_and_the_name(client, user, make_run) -> None:
    run = make_run(user, name="<b>bold</b>", code="print('<script>x</script>')")

    html = client.get(f"/runs/{run.pk}/").content.decode()

    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<script>x</script>" not in html


def test_the_run_list_shows_only_my_runs_newest_first(client, user, other_user, make_run) -> None:
    now = timezone.now()
    older = make_run(user, name="older-run")
    newer = make_run(user, name="newer-run")
    make_run(other_user, name="someone-elses-run")
    Run.objects.filter(pk=older.pk).update(queued_at=now - timedelta(minutes=5))
    Run.objects.filter(pk=newer.pk).update(queued_at=now)

    response = client.get("/runs/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "someone-elses-run" not in html
    assert html.index("newer-run") < html.index("older-run")
    assert f'href="/runs/{newer.pk}/"' in html


def test_the_run_list_loads_no_code_or_archives_and_the_same_queries_for_more_runs(client, user, make_run) -> None:
    def list_queries() -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/runs/").status_code == 200
        return [q["sql"] for q in queries.captured_queries]

    make_run(user, code="#" * 100_000)
    few = list_queries()
    for _ in range(20):
        make_run(user, code="#" * 100_000)

    many = list_queries()

    assert len(many) == len(few)
    runs_query = next(sql for sql in many if 'FROM "evaluations_run"' in sql)
    for column in ('"code"', '"archive"', '"stdin"'):
        assert column not in runs_query, runs_query


def test_an_empty_run_list_invites_a_first_submission(client) -> None:
    html = client.get("/runs/").content.decode()

    assert "No runs yet." in html
    assert 'href="/submit/"' in html


def test_a_run_that_ended_in_error_shows_the_reason_and_what_to_do(client, user, make_run) -> None:
    run = make_run(
        user, status=RunStatus.ERROR, reason="worker_lost", detail="the worker running this was lost; run it again"
    )

    html = client.get(f"/runs/{run.pk}/").content.decode()

    assert 'data-status="error"' in html
    assert '<span class="reason" data-reason="worker_lost">Worker lost</span>' in html
    assert "run it again" in html
