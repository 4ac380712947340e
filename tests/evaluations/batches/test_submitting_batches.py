"""Batches through the API and the pages: one program over inputs × configurations, checked and
counted against the daily quotas whole, waiting beyond the concurrent-run quota, with results."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from evaluations.models import AuditEvent, Batch, QuotaOverride, Run, RunReason, RunStatus
from evaluations.runs import tasks
from evaluations.runs.execution import exec_request_for

BATCHES = "/api/v1/batches/"


def zip_bytes(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


CODE = "import sys\nprint(sys.argv[1:], sys.stdin.read())\n"


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    """The run ids whose task message was sent (nothing reaches a broker)."""
    ids: list[int] = []
    monkeypatch.setattr(tasks.execute_run, "apply_async", lambda args, **kwargs: ids.append(args[0]))
    return ids


def submit(api_client, **body):
    return api_client.post(BATCHES, {"name": "sweep", "code": CODE, **body}, format="json")


def test_a_batch_makes_one_run_per_input_and_configuration(api_client, user, sent, django_capture_on_commit_callbacks):
    inputs = [{"label": "a", "stdin": "one", "argv": ["--x", "1"]}, {"label": "b", "argv": "--x '2 3'"}]
    configs = [{"label": "small", "wall_seconds": 2, "memory_mb": 64}, {"wall_seconds": 3}]

    with django_capture_on_commit_callbacks(execute=True):
        response = submit(api_client, argv=["--base"], stdin="default", inputs=inputs, configs=configs)

    assert response.status_code == 201, response.content
    body = response.json()
    batch = Batch.objects.get(pk=body["id"])
    runs = list(batch.runs.order_by("id"))
    assert body["total"] == 4 and body["counts"]["queued"] == 4 and body["done"] is False
    assert [(r.batch_input.index, r.batch_config) for r in runs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [r.wall_seconds for r in runs] == [2.0, 3.0, 2.0, 3.0]
    assert [exec_request_for(r).argv for r in runs[::2]] == [("--base", "--x", "1"), ("--base", "--x", "2 3")]
    assert [exec_request_for(r).stdin for r in runs[::2]] == [b"one", b"default"]
    assert sent == [r.pk for r in runs]  # a generous concurrent-run quota: every run may start
    assert [run["id"] for run in body["runs"]] == [r.pk for r in runs]
    assert AuditEvent.objects.filter(action="batch_submit", target=f"batch:{batch.pk}").exists()


def test_a_batch_over_the_concurrent_quota_is_accepted_and_only_that_many_are_sent(
    api_client, user, sent, django_capture_on_commit_callbacks
):
    QuotaOverride.objects.filter(user=user).update(concurrent_runs=2)

    with django_capture_on_commit_callbacks(execute=True):
        response = submit(api_client, inputs=[{"argv": [str(i)]} for i in range(50)])

    assert response.status_code == 201, response.content
    assert Run.objects.filter(batch_id=response.json()["id"], status=RunStatus.QUEUED).count() == 50
    assert len(sent) == 2  # the others are sent as the user's runs end


def test_a_single_submission_over_the_concurrent_quota_waits_only_when_asked(api_client, user, make_run, no_worker):
    QuotaOverride.objects.filter(user=user).update(concurrent_runs=1)
    make_run(user, status=RunStatus.RUNNING)

    refused = api_client.post("/api/v1/submissions/", {"code": "print(1)"}, format="json")
    waits = api_client.post("/api/v1/submissions/", {"code": "print(1)", "wait": True}, format="json")

    assert refused.status_code == 429 and refused.json()["quota"] == "concurrent_runs"
    assert waits.status_code == 201 and waits.json()["status"] == "queued"


def test_a_batch_that_does_not_fit_the_daily_runs_is_refused_whole(api_client, user, counts, no_worker):
    QuotaOverride.objects.filter(user=user).update(runs_per_day=10)
    before = counts()

    response = submit(api_client, inputs=[{}] * 4, configs=[{}, {}, {}])

    assert response.status_code == 429
    assert response.json()["quota"] == "runs_per_day"
    assert "this batch has 12 runs" in response.json()["detail"]
    assert counts() == before and not Batch.objects.exists()


def test_a_batch_of_more_than_a_thousand_runs_is_refused_naming_the_limit(api_client, counts, no_worker):
    response = submit(api_client, inputs=[{}] * 501, configs=[{}, {}])

    assert response.status_code == 400
    assert "1002 runs; a batch has at most 1000" in json.dumps(response.json())
    assert not Batch.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": [{"stdin": 5}]}, "inputs[0].stdin"),
        ({"inputs": [{}, {"colour": "red"}]}, "inputs[1]"),
        ({"inputs": [{"argv": "'unclosed"}]}, "inputs[0].argv"),
        ({"inputs": [{"stdin_file": "data.txt"}]}, "inputs[0].stdin_file"),
        ({"configs": [{"wall_seconds": 10_000}]}, "configs[0].wall_seconds"),
        ({"configs": [{"memory_mb": 1.5}]}, "configs[0].memory_mb"),
        ({"inputs": "nope"}, "inputs"),
    ],
)
def test_a_bad_input_or_config_is_a_400_naming_the_item(api_client, body, field, counts, no_worker):
    before = counts()

    response = submit(api_client, **body)

    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert counts() == before


def test_inputs_from_a_csv_file_and_stdin_from_project_files(api_client, no_worker):
    project = zip_bytes({"main.py": CODE.encode(), "data/a.txt": b"alpha", "data/b.txt": b"beta"})
    rows = "label,stdin_file,argv\nfirst,data/a.txt,--n 1\nsecond,data/b.txt,\n"

    response = api_client.post(
        BATCHES,
        {
            "file": SimpleUploadedFile("project.zip", project),
            "inputs_file": SimpleUploadedFile("inputs.csv", rows.encode()),
            "configs": json.dumps([{"label": "x", "memory_mb": 64}]),
        },
        format="multipart",
    )

    assert response.status_code == 201, response.content
    runs = list(Run.objects.filter(batch_id=response.json()["id"]).order_by("id"))
    assert [exec_request_for(r).stdin for r in runs] == [b"alpha", b"beta"]
    assert [exec_request_for(r).argv for r in runs] == [("--n", "1"), ()]
    assert response.json()["configs"] == [{"label": "x", "wall_seconds": 10.0, "memory_mb": 64}]


def _finish(run, status, reason=None, exit_code=None, seconds=1.0):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    Run.objects.filter(pk=run.pk).update(
        status=status,
        reason=reason,
        exit_code=exit_code,
        started_at=now - timedelta(seconds=seconds),
        finished_at=now,
        stdout_bytes=10,
        stderr_bytes=2,
        peak_memory_bytes=1000,
    )


def test_results_count_by_status_and_reason_with_run_times_as_csv_and_json(api_client, no_worker):
    batch_id = submit(api_client, inputs=[{"label": str(i)} for i in range(4)]).json()["id"]
    runs = list(Run.objects.filter(batch_id=batch_id).order_by("id"))
    _finish(runs[0], RunStatus.SUCCEEDED, RunReason.EXIT_CODE, 0, seconds=1)
    _finish(runs[1], RunStatus.FAILED, RunReason.EXIT_CODE, 3, seconds=2)
    _finish(runs[2], RunStatus.FAILED, RunReason.TIMEOUT, None, seconds=10)

    body = api_client.get(f"{BATCHES}{batch_id}/").json()
    as_json = api_client.get(f"{BATCHES}{batch_id}/results/").json()
    as_csv = list(csv.DictReader(io.StringIO(api_client.get(f"{BATCHES}{batch_id}/results/csv/").content.decode())))

    assert body["counts"] == {"queued": 1, "running": 0, "succeeded": 1, "failed": 2, "cancelled": 0, "error": 0}
    assert body["reasons"] == {"exit_code": 2, "timeout": 1}
    assert body["median_run_seconds"] == pytest.approx(2, abs=0.05)
    assert body["p95_run_seconds"] == pytest.approx(10, abs=0.05)
    assert [row["input_label"] for row in as_json] == ["0", "1", "2", "3"]
    assert as_json[1]["exit_code"] == 3 and as_json[1]["output_bytes"] == 12
    assert [row["status"] for row in as_csv] == ["succeeded", "failed", "failed", "queued"]
    assert as_csv[2]["reason"] == "timeout" and as_csv[0]["run_id"] == str(runs[0].pk)


def test_cancelling_a_batch_ends_its_queued_runs_and_asks_running_ones_to_stop(api_client, no_worker):
    batch_id = submit(api_client, inputs=[{}] * 3).json()["id"]
    running = Run.objects.filter(batch_id=batch_id).order_by("id").first()
    Run.objects.filter(pk=running.pk).update(status=RunStatus.RUNNING)

    response = api_client.post(f"{BATCHES}{batch_id}/cancel/")

    assert response.status_code == 202
    assert response.json()["counts"]["cancelled"] == 2
    running.refresh_from_db()
    assert running.status == RunStatus.RUNNING and running.cancel_requested_at is not None


def test_re_running_the_failed_runs_makes_a_new_batch_of_just_those(api_client, no_worker):
    batch_id = submit(api_client, inputs=[{"label": str(i)} for i in range(3)], configs=[{}, {"memory_mb": 64}]).json()[
        "id"
    ]
    runs = list(Run.objects.filter(batch_id=batch_id).order_by("id"))
    _finish(runs[1], RunStatus.FAILED, RunReason.EXIT_CODE, 1)
    _finish(runs[4], RunStatus.ERROR, RunReason.SANDBOX_ERROR)
    for run in (runs[0], runs[2], runs[3], runs[5]):
        _finish(run, RunStatus.SUCCEEDED, RunReason.EXIT_CODE, 0)

    response = api_client.post(f"{BATCHES}{batch_id}/rerun-failed/")
    nothing = api_client.post(f"{BATCHES}{response.json()['id']}/rerun-failed/")

    assert response.status_code == 201, response.content
    again = Batch.objects.get(pk=response.json()["id"])
    assert again.rerun_of_id == batch_id
    pairs = [(r.batch_input.label, r.batch_config, r.memory_bytes) for r in again.runs.order_by("id")]
    assert pairs == [("0", 1, 64 * 1024 * 1024), ("2", 0, runs[4].memory_bytes)]
    assert nothing.status_code == 409


def test_another_users_batch_is_not_found(api_client, make_user, no_worker):
    from rest_framework.test import APIClient

    from evaluations.accounts import tokens

    batch_id = submit(api_client).json()["id"]
    _, key = tokens.token_create(user=make_user("eve"), name="t")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    assert other.get(f"{BATCHES}{batch_id}/").status_code == 404
    assert other.get(f"{BATCHES}{batch_id}/results/csv/").status_code == 404
    assert other.post(f"{BATCHES}{batch_id}/cancel/").status_code == 404
    assert other.get(BATCHES).json()["results"] == []


def test_the_batch_page_shows_a_cell_per_run_and_the_counts(client, api_client, user, no_worker):
    batch_id = submit(api_client, inputs=[{}] * 5).json()["id"]

    page = client.get(f"/batches/{batch_id}/")

    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('class="cell status-queued"') == 5
    assert 'data-count="queued">5<' in html
    assert f"/api/v1/batches/{batch_id}/results/csv/" in html


def test_the_batch_form_takes_inputs_as_a_csv_upload(client, user, no_worker):
    response = client.post(
        "/batches/new/",
        {
            "name": "form sweep",
            "code": CODE,
            "inputs_file": SimpleUploadedFile("in.csv", b"label,stdin\nx,1\ny,2\nz,3\n"),
            "configs_file": SimpleUploadedFile("c.json", b'[{"wall_seconds": 2}, {"wall_seconds": 4}]'),
        },
    )

    assert response.status_code == 302, response.content.decode()[-2000:]
    batch = Batch.objects.get(name="form sweep")
    assert batch.runs.count() == 6
    assert response["Location"] == f"/batches/{batch.pk}/"


def test_the_batch_form_names_a_bad_row(client, user, counts, no_worker):
    before = counts()

    response = client.post(
        "/batches/new/", {"code": CODE, "inputs_file": SimpleUploadedFile("in.json", b'[{"stdin": "ok"}, {"nope": 1}]')}
    )

    assert response.status_code == 400
    assert "inputs_file[1]: unknown keys nope" in response.content.decode()
    assert counts() == before


@pytest.mark.parametrize(
    ("upload", "field"),
    [
        (("in.json", b"[" * 100_000 + b"]" * 100_000), "inputs_file"),
        (("in.json", b'[{"label": "\\udce9"}]'), "inputs_file[0].label"),
        (("in.json", b'[{"argv": ["ok", "\\ud800"]}]'), "inputs_file[0].argv"),
        (("in.csv", b"label,colour\nx,red\n"), "inputs_file[0]"),
        (("in.txt", b"x"), "inputs_file"),
        (("in.csv", b"\xff\xfe"), "inputs_file"),
    ],
)
def test_an_odd_inputs_file_is_a_400_naming_it(api_client, upload, field, counts, no_worker):
    before = counts()

    response = api_client.post(BATCHES, {"code": CODE, "inputs_file": SimpleUploadedFile(*upload)}, format="multipart")

    assert response.status_code == 400, response.content[:500]
    assert field in response.json(), response.json()
    assert counts() == before


def test_inputs_as_json_text_in_a_form_nested_too_deeply_is_a_400(api_client, no_worker):
    response = api_client.post(BATCHES, {"code": CODE, "inputs": "[" * 100_000}, format="multipart")

    assert response.status_code == 400 and "inputs" in response.json()


def test_the_list_has_each_batchs_counts(api_client, no_worker):
    first = submit(api_client, inputs=[{}] * 2).json()["id"]
    second = submit(api_client, inputs=[{}] * 3).json()["id"]
    _finish(Run.objects.filter(batch_id=second).first(), RunStatus.SUCCEEDED, RunReason.EXIT_CODE, 0, seconds=2)

    listed = {b["id"]: b for b in api_client.get(BATCHES).json()["results"]}

    assert listed[first]["total"] == 2 and listed[first]["counts"]["queued"] == 2
    assert listed[second]["counts"]["succeeded"] == 1 and listed[second]["median_run_seconds"] == pytest.approx(
        2, abs=0.05
    )
    assert list(listed) == [second, first]  # newest first


def test_a_batch_is_refused_when_no_run_of_the_user_may_ever_run(api_client, user, counts, no_worker):
    QuotaOverride.objects.filter(user=user).update(concurrent_runs=0)
    before = counts()

    response = submit(api_client, inputs=[{}] * 2)

    assert response.status_code == 429 and response.json()["quota"] == "concurrent_runs"
    assert "ask an admin" in response.json()["detail"]
    assert counts() == before
