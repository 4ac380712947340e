"""Requests schemathesis found answered with a 500, an HTML page or a silent guess: each now gets a
JSON 4xx that names what was wrong (tests/evaluations/api/test_api_conforms_to_its_schema.py)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

BEYOND_BIGINT = 2**64


def test_a_submission_id_beyond_the_database_range_is_not_found(api_client) -> None:
    share = api_client.patch(f"/api/v1/submissions/{BEYOND_BIGINT}/", {"shared_with_team": True}, format="json")
    rerun = api_client.post(f"/api/v1/submissions/{BEYOND_BIGINT}/runs/", {}, format="json")

    assert share.status_code == rerun.status_code == 404
    assert share.json() == rerun.json() == {"detail": "No such submission"}


@pytest.mark.parametrize("path", ["/api/v1/runs/abc/", "/api/v1/runs/-1/logs/", "/api/v1/nothing/", "/api/v1/"])
def test_an_unknown_api_path_answers_a_json_404(path, api_client) -> None:
    csrf_checking = APIClient(enforce_csrf_checks=True)

    for response in (api_client.get(path), csrf_checking.post(path, {}, format="json")):
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert "/api/docs/" in response.json()["detail"]


def test_a_path_without_its_slash_is_still_redirected_to_it(api_client) -> None:
    response = api_client.get("/api/v1/runs")

    assert (response.status_code, response["Location"]) == (301, "/api/v1/runs/")


@pytest.mark.parametrize(
    "field, value",
    [("stdin", 0), ("name", 12), ("code", 1.5), ("wall_seconds", "5"), ("memory_mb", "128"), ("memory_mb", True)],
)
def test_a_json_value_of_another_type_is_refused_not_converted(field, value, api_client, counts) -> None:
    response = api_client.post("/api/v1/submissions/", {"code": "print(1)\n", field: value}, format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]
    assert counts() == (0, 0)


def test_a_form_still_sends_its_numbers_as_text(api_client) -> None:
    response = api_client.post(
        "/api/v1/submissions/", {"code": "print(1)\n", "wall_seconds": "5", "memory_mb": "128"}, format="multipart"
    )

    assert response.status_code == 201, response.content
    assert response.json()["limits"] == {"wall_seconds": 5.0, "memory_mb": 128}


def test_sharing_needs_a_json_boolean_and_a_form_needs_the_field(api_client, user, make_run) -> None:
    run = make_run(user)
    url = f"/api/v1/submissions/{run.submission_id}/"

    as_text = api_client.patch(url, {"shared_with_team": "true"}, format="json")
    missing_from_a_form = api_client.patch(url, {}, format="multipart")

    assert as_text.status_code == missing_from_a_form.status_code == 400
    assert "shared_with_team" in as_text.json() and "shared_with_team" in missing_from_a_form.json()


def test_arguments_that_cannot_be_split_say_why_under_their_own_name(api_client) -> None:
    response = api_client.post("/api/v1/submissions/", {"code": "print(1)\n", "argv": "it's"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"argv": ["cannot be split into arguments: No closing quotation"]}


@pytest.mark.parametrize("query", ["page_size=", "page_size=0", "page_size=abc"])
def test_an_empty_or_bad_page_size_is_refused(query, api_client) -> None:
    response = api_client.get(f"/api/v1/runs/?{query}")

    assert response.status_code == 400
    assert list(response.json()) == ["page_size"]


def test_an_empty_cursor_is_the_first_page(api_client, user, make_run) -> None:
    make_run(user)

    response = api_client.get("/api/v1/runs/?cursor=")

    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


def test_an_empty_log_offset_is_refused(api_client, user, make_run) -> None:
    run = make_run(user)

    response = api_client.get(f"/api/v1/runs/{run.pk}/logs/?stream=stdout&offset=")

    assert response.status_code == 400
    assert list(response.json()) == ["offset"]
