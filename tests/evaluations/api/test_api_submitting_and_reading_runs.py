"""The REST API's happy path and its access rules: submit, read one run, list runs."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from evaluations.models import Run, RunStatus
from evaluations.runs.execution import exec_request_for

SUBMIT = "/api/v1/submissions/"
MiB = 1024 * 1024


def test_a_json_submission_answers_201_with_the_queued_run(api_client, user) -> None:
    response = api_client.post(
        SUBMIT, {"name": "first", "code": "print('hello')\n", "wall_seconds": 2.5, "memory_mb": 64}, format="json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    run = Run.objects.get(pk=body["id"])
    assert run.submission.owner == user
    assert run.submission.code == "print('hello')\n"
    assert body["url"] == f"http://testserver/runs/{run.pk}/"
    assert body["api_url"] == f"http://testserver/api/v1/runs/{run.pk}/"
    assert body["status"] == "queued" == run.status
    assert body["limits"] == {"wall_seconds": 2.5, "memory_mb": 64}
    assert run.memory_bytes == 64 * MiB
    assert body["submission"]["name"] == "first"
    assert body["stdout"] == "" and body["exit_code"] is None


def test_limits_left_out_get_the_site_defaults(api_client) -> None:
    response = api_client.post(SUBMIT, {"code": "print(1)"}, format="json")

    assert response.status_code == 201
    assert response.json()["limits"] == {
        "wall_seconds": settings.CRUCIBLE_DEFAULT_WALL_SECONDS,
        "memory_mb": settings.CRUCIBLE_DEFAULT_MEMORY_MB,
    }


def test_a_program_starts_in_a_preloaded_interpreter_only_when_its_submission_asks(api_client, user) -> None:
    default = api_client.post(SUBMIT, {"code": "print(1)"}, format="json").json()
    asked = api_client.post(SUBMIT, {"code": "print(1)", "preload": True}, format="json").json()
    form = api_client.post(SUBMIT, {"code": "print(1)", "preload": "true"}, format="multipart").json()

    assert [body["submission"]["preload"] for body in (default, asked, form)] == [False, True, True]
    runs = [Run.objects.get(pk=body["id"]) for body in (default, asked, form)]
    assert [exec_request_for(run).preload for run in runs] == [False, True, True]
    browser = Client()
    browser.force_login(user)
    browser.post("/submit/", {"code": "print(2)", "preload": "on"})
    browser.post("/submit/", {"code": "print(3)"})
    assert [r.submission.preload for r in Run.objects.order_by("-pk")[:2]] == [False, True]


def test_a_submission_without_a_name_is_called_untitled(api_client) -> None:
    response = api_client.post(SUBMIT, {"code": "print(1)", "name": "   "}, format="json")

    assert response.status_code == 201
    assert response.json()["submission"]["name"] == "untitled"


def test_the_limits_at_the_edges_of_their_ranges_are_accepted(api_client) -> None:
    response = api_client.post(
        SUBMIT,
        {"code": "print(1)", "wall_seconds": settings.CRUCIBLE_MAX_WALL_SECONDS, "memory_mb": 32},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["limits"] == {"wall_seconds": settings.CRUCIBLE_MAX_WALL_SECONDS, "memory_mb": 32}


def test_a_multipart_py_upload_answers_201_and_stores_the_code(api_client) -> None:
    source = "# -*- coding: utf-8 -*-\nprint('héllo ✓')\n"
    upload = SimpleUploadedFile("greet.py", source.encode("utf-8"), content_type="text/x-python")

    response = api_client.post(SUBMIT, {"file": upload, "name": "greet", "memory_mb": "128"}, format="multipart")

    assert response.status_code == 201, response.content
    run = Run.objects.get(pk=response.json()["id"])
    assert run.submission.code == source
    assert run.memory_bytes == 128 * MiB


def test_a_multipart_submission_may_carry_the_code_as_a_text_field(api_client) -> None:
    response = api_client.post(SUBMIT, {"code": "print(2)\n"}, format="multipart")

    assert response.status_code == 201, response.content
    assert Run.objects.get(pk=response.json()["id"]).submission.code == "print(2)\n"


def test_code_of_exactly_the_size_limit_is_accepted(api_client) -> None:
    code = "#" * settings.CRUCIBLE_MAX_CODE_BYTES

    response = api_client.post(SUBMIT, {"code": code}, format="json")

    assert response.status_code == 201
    assert len(Run.objects.get(pk=response.json()["id"]).submission.code) == settings.CRUCIBLE_MAX_CODE_BYTES


def test_reading_a_run_returns_what_the_submission_returned(api_client) -> None:
    created = api_client.post(SUBMIT, {"code": "print(1)"}, format="json").json()

    response = api_client.get(f"/api/v1/runs/{created['id']}/")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == created["id"]
    assert body["status"] == "queued"
    assert body["url"] == created["url"] and body["limits"] == created["limits"]


def test_a_finished_run_reports_its_output_as_text_and_exact_bytes(api_client, user, make_run) -> None:
    raw = b"ok \xff\x00\n"
    run = make_run(user, status=RunStatus.FAILED, reason="exit_code", exit_code=3, stdout=raw, stdout_bytes=len(raw))

    body = api_client.get(f"/api/v1/runs/{run.pk}/").json()

    assert body["status"] == "failed" and body["reason"] == "exit_code" and body["exit_code"] == 3
    assert body["stdout"] == "ok \ufffd\x00\n"
    assert base64.b64decode(body["stdout_base64"]) == raw
    assert body["stdout_bytes"] == len(raw)


def test_another_users_run_is_not_found(api_client, other_user, make_run) -> None:
    theirs = make_run(other_user)

    response = api_client.get(f"/api/v1/runs/{theirs.pk}/")

    assert response.status_code == 404
    assert "print" not in response.content.decode()


def test_a_run_that_does_not_exist_is_not_found(api_client) -> None:
    assert api_client.get("/api/v1/runs/987654/").status_code == 404


def test_the_run_list_holds_only_my_runs_newest_first(api_client, user, other_user, make_run) -> None:
    now = timezone.now()
    old = make_run(user, name="old")
    new = make_run(user, name="new")
    make_run(other_user, name="theirs")
    # auto_now_add stamps "now"; spread them out so the order is the one we set.
    Run.objects.filter(pk=old.pk).update(queued_at=now - timedelta(hours=1))
    Run.objects.filter(pk=new.pk).update(queued_at=now)

    response = api_client.get("/api/v1/runs/")

    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [new.pk, old.pk]


def test_runs_queued_in_the_same_instant_list_the_later_one_first(api_client, user, make_run) -> None:
    first, second = make_run(user), make_run(user)
    Run.objects.update(queued_at=timezone.now())

    ids = [r["id"] for r in api_client.get("/api/v1/runs/").json()["results"]]

    assert ids == [second.pk, first.pk]


@pytest.mark.parametrize(
    "method, path",
    [("post", SUBMIT), ("get", "/api/v1/runs/"), ("get", "/api/v1/runs/1/")],
    ids=["submit", "list", "detail"],
)
def test_an_anonymous_caller_is_refused(anonymous_api_client, counts, method, path) -> None:
    response = getattr(anonymous_api_client, method)(path, {"code": "print(1)"}, format="json")

    assert response.status_code in (401, 403)
    assert "detail" in response.json()
    assert counts() == (0, 0)


def test_a_wrong_token_answers_401(db, counts) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)

    response = api.post(SUBMIT, {"code": "print(1)"}, format="json")

    assert response.status_code == 401
    assert "token" in response.json()["detail"].lower()
    assert counts() == (0, 0)


def test_a_deactivated_users_token_answers_401(api_client, user, counts) -> None:
    user.is_active = False
    user.save()

    response = api_client.post(SUBMIT, {"code": "print(1)"}, format="json")

    assert response.status_code == 401
    assert counts() == (0, 0)


def test_a_browser_session_cannot_submit_through_the_api_without_a_csrf_token(user, counts) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)

    response = browser.post(SUBMIT, {"code": "print(1)"}, content_type="application/json")

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert counts() == (0, 0)


def test_a_browser_session_can_read_its_runs_through_the_api(client, user, make_run) -> None:
    run = make_run(user)

    response = client.get(f"/api/v1/runs/{run.pk}/")

    assert response.status_code == 200
    assert response.json()["id"] == run.pk
