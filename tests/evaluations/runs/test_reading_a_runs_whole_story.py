"""A run's page tells its whole story (entry point, arguments, stdin, the project's files with a
viewer, the image, the other runs of its submission), and two runs can be compared side by side."""

from __future__ import annotations

import io
import zipfile

import pytest

from evaluations.models import Run
from evaluations.runs.logstore import RunLogWriter


def zipped(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.fixture
def project_run(user, make_run):
    run = make_run(user, status="succeeded", exit_code=0)
    submission = run.submission
    submission.archive = zipped(
        {"main.py": b"import lib.util\n", "lib/util.py": b"X = '<b>'\n", "data.bin": b"\xff\x00"}
    )
    submission.archive_name = "experiment.zip"
    submission.argv = ["--epochs", "3", "two words"]
    submission.stdin = "Ada\nLovelace\n"
    submission.save()
    return run


def with_output(run, data: bytes):
    writer = RunLogWriter(run)
    writer.append("stdout", 0, data)
    writer.close()
    return run


def test_the_run_page_shows_everything_that_went_in(client, project_run) -> None:
    html = client.get(f"/runs/{project_run.pk}/").content.decode()

    assert '<dd class="mono" id="input-entrypoint">main.py</dd>' in html
    assert '<code class="arg">two words</code>' in html
    assert "Ada\nLovelace" in html
    assert "experiment.zip" in html and "3 files" in html
    assert f'href="/runs/{project_run.pk}/files/lib/util.py"' in html


def test_a_projects_file_opens_as_escaped_text_or_downloads(client, project_run) -> None:
    page = client.get(f"/runs/{project_run.pk}/files/lib/util.py")
    binary = client.get(f"/runs/{project_run.pk}/files/data.bin")
    download = client.get(f"/runs/{project_run.pk}/files/data.bin?download=1")

    assert page.status_code == 200 and "X = &#x27;&lt;b&gt;&#x27;" in page.content.decode()
    assert "Not UTF-8 text" in binary.content.decode()
    assert download.content == b"\xff\x00" and "attachment" in download["Content-Disposition"]


@pytest.mark.parametrize("path", ["nope.py", "../main.py", "lib"])
def test_a_path_not_in_the_project_is_not_found(client, project_run, path) -> None:
    assert client.get(f"/runs/{project_run.pk}/files/{path}").status_code == 404


def test_someone_elses_project_file_is_not_found(project_run, make_user) -> None:
    from django.test import Client

    stranger = Client()
    stranger.force_login(make_user("stranger"))

    assert stranger.get(f"/runs/{project_run.pk}/files/main.py").status_code == 404


def test_the_other_runs_of_the_submission_are_listed_with_a_compare_link(client, project_run) -> None:
    again = Run.objects.create(
        submission=project_run.submission,
        wall_seconds=project_run.wall_seconds,
        memory_bytes=project_run.memory_bytes,
        stdout_limit_bytes=project_run.stdout_limit_bytes,
        stderr_limit_bytes=project_run.stderr_limit_bytes,
    )

    html = client.get(f"/runs/{again.pk}/").content.decode()

    assert 'id="siblings"' in html and f'data-run-id="{project_run.pk}"' in html
    assert f'href="/runs/compare/?a={project_run.pk}&amp;b={again.pk}"' in html


def test_comparing_two_runs_shows_their_outcomes_and_an_output_diff(client, user, make_run) -> None:
    a = with_output(make_run(user, status="succeeded", exit_code=0), b"same\nold line\nend\n")
    b = with_output(make_run(user, status="failed", exit_code=3, code="print(2)\n"), b"same\nnew line\nend\n")

    response = client.get(f"/runs/compare/?a={a.pk}&b={b.pk}")

    html = response.content.decode()
    assert response.status_code == 200
    assert '<span class="diff-del">-old line</span>' in html and '<span class="diff-add">+new line</span>' in html
    assert "<strong>different code</strong>" in html
    assert "<td>0</td><td>3</td>" in html


def test_identical_outputs_say_so(client, user, make_run) -> None:
    a = with_output(make_run(user, status="succeeded"), b"42\n")
    b = with_output(make_run(user, status="succeeded"), b"42\n")

    assert "The same output, byte for byte" in client.get(f"/runs/compare/?a={a.pk}&b={b.pk}").content.decode()


@pytest.mark.parametrize("query", ["", "?a=1", "?a=x&b=2", "?a=1&b=" + "9" * 30])
def test_compare_without_two_run_numbers_is_a_bad_request(client, query) -> None:
    assert client.get(f"/runs/compare/{query}").status_code == 400


def test_compare_with_someone_elses_run_is_not_found(client, user, other_user, make_run) -> None:
    mine, theirs = make_run(user), make_run(other_user)

    assert client.get(f"/runs/compare/?a={mine.pk}&b={theirs.pk}").status_code == 404
