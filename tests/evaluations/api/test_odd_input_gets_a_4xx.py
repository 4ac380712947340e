"""Odd values the API answered with a 500, or took for another type: each is now a 4xx naming what was
wrong (issue 13). The property-based side is test_any_input_gets_a_4xx_or_a_result.py."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.django_db

SUBMIT = "/api/v1/submissions/"


@pytest.mark.parametrize("query", ["offset=10000000000000000000000000000", "offset=9223372036854775807&limit=100"])
def test_a_log_offset_beyond_any_stream_is_refused(query, api_client, user, make_run) -> None:
    run = make_run(user)

    response = api_client.get(f"/api/v1/runs/{run.pk}/logs/?stream=stdout&{query}")

    assert response.status_code == 400, response.content
    assert list(response.json()) == ["offset"]


@pytest.mark.parametrize("query", ["limit=10000000000000000000000000000", "page_size=10000000000000000000000000000"])
def test_other_integer_query_parameters_beyond_their_range_are_refused(query, api_client, user, make_run) -> None:
    run = make_run(user)
    path = f"/api/v1/runs/{run.pk}/logs/?stream=stdout&" if query.startswith("limit") else "/api/v1/runs/?"

    response = api_client.get(path + query)

    assert response.status_code == 400, response.content


@pytest.mark.parametrize(
    "body, field",
    [
        ({"code": "print(1)\n", "argv": ["caf\udce9"]}, "argv"),
        ({"code": "print(1)\n", "caf\udce9": 1}, "detail"),
    ],
    ids=["in-a-list", "in-a-key"],
)
def test_a_json_string_with_a_lone_surrogate_is_refused(body, field, api_client, counts) -> None:
    # ensure_ascii: the escape "\udce9" is valid JSON; it decodes to no UTF-8 text.
    response = api_client.post(SUBMIT, json.dumps(body, ensure_ascii=True), content_type="application/json")

    assert response.status_code == 400, response.content
    [message] = response.json()[field]
    assert "U+DCE9" in message
    assert counts() == (0, 0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("code", 12345),
        ("code", ["print(1)"]),
        ("entrypoint", 1),
        ("argv", [1, 2]),
        ("argv", 3),
        ("wall_seconds", True),
        ("memory_mb", [128]),
    ],
)
def test_a_json_field_takes_its_own_type_only(field, value, api_client, counts) -> None:
    body = {"code": "print(1)\n", field: value}

    response = api_client.post(SUBMIT, body, format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]
    assert counts() == (0, 0)
