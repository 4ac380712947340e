"""POST /api/v1/submissions/ with bad input: a 4xx JSON answer naming the field, and nothing stored."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

URL = "/api/v1/submissions/"


@dataclass
class Bad:
    """One bad request: how to send it, and which key and words the error must contain."""

    send: Callable[[Any], Any]
    field: str | tuple[str, ...]  # a tuple: any one of these names will do
    words: tuple[str, ...] = ()
    statuses: tuple[int, ...] = (400,)
    marks: list = field(default_factory=list)


def as_json(data: dict) -> Callable:
    return lambda api: api.post(URL, data, format="json")


def raw(body: bytes | str, content_type: str = "application/json") -> Callable:
    return lambda api: api.generic("POST", URL, body, content_type=content_type)


def multipart(**data: Any) -> Callable:
    def send(api):
        for value in data.values():
            if hasattr(value, "seek"):
                value.seek(0)  # the uploads are built once, at import; a rerun must send them whole
        return api.post(URL, data, format="multipart")

    return send


def raw_multipart(**fields: bytes) -> Callable:
    """A multipart body built by hand, so a text field can carry bytes that are not UTF-8."""
    parts = [
        b'--XyZ\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n' + value + b"\r\n"
        for name, value in fields.items()
    ]
    return raw(b"".join(parts) + b"--XyZ--\r\n", "multipart/form-data; boundary=XyZ")


def py_file(content: bytes, name: str = "main.py") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/x-python")


def limit_range(name: str) -> tuple[str, ...]:
    if name == "wall_seconds":
        return ("0.1", f"{settings.CRUCIBLE_MAX_WALL_SECONDS:g}")
    return ("32", str(settings.CRUCIBLE_MAX_MEMORY_MB))


MAX_CODE = settings.CRUCIBLE_MAX_CODE_BYTES
MAX_WALL = settings.CRUCIBLE_MAX_WALL_SECONDS
MAX_MB = settings.CRUCIBLE_MAX_MEMORY_MB

CASES: dict[str, Bad] = {
    # The code itself.
    "empty code": Bad(as_json({"code": ""}), "code", ("empty",)),
    "whitespace-only code": Bad(as_json({"code": "  \n\t  \n"}), "code", ("empty",)),
    "code over the size limit": Bad(
        lambda api: api.post(URL, {"code": "#" * (MAX_CODE + 1)}, format="json"), "code", (str(MAX_CODE),)
    ),
    "code with a NUL": Bad(as_json({"code": "print(1)\x00"}), "code", ("null",)),
    "code with a lone surrogate": Bad(raw('{"code": "print(\'\\ud800\')"}'), "code"),
    "name with a lone surrogate": Bad(raw('{"code": "print(1)", "name": "x\\udfff"}'), "name"),
    "name with a NUL": Bad(as_json({"code": "print(1)", "name": "a\x00b"}), "name"),
    "name over 200 characters": Bad(as_json({"code": "print(1)", "name": "n" * 201}), "name", ("200",)),
    "argv with a NUL": Bad(as_json({"code": "print(1)", "argv": ["a\x00b"]}), "argv", ("NUL",)),
    "argv line with a NUL": Bad(as_json({"code": "print(1)", "argv": "a \x00b"}), "argv", ("NUL",)),
    "argv with a lone surrogate": Bad(raw('{"code": "print(1)", "argv": ["\\ud800"]}'), "argv"),
    "code that is not a string": Bad(as_json({"code": ["print(1)"]}), "code"),
    "code that is null": Bad(as_json({"code": None}), "code"),
    # Uploads.
    "non-UTF-8 .py upload": Bad(multipart(file=py_file(b"print('\xff\xfe')\n")), "file", ("UTF-8",)),
    "non-.py upload": Bad(multipart(file=py_file(b"print(1)\n", name="main.txt")), "file", (".py",)),
    "upload over the size limit": Bad(
        lambda api: api.post(URL, {"file": py_file(b"#" * (MAX_CODE + 1))}, format="multipart"),
        "file",
        (str(MAX_CODE),),
    ),
    "file field that is not a file": Bad(multipart(file="print(1)"), "file"),
    "a .py upload containing a NUL": Bad(multipart(file=py_file(b"print(1)\x00\n")), ("file", "code"), ("NUL",)),
    "both code and file": Bad(multipart(code="print(1)", file=py_file(b"print(2)\n")), "code", ("file",)),
    "neither code nor file": Bad(as_json({"name": "nothing"}), "code", ("file",)),
    "an empty JSON object": Bad(as_json({}), "code"),
    # Limits: the message names the field and the allowed range.
    "wall_seconds 0": Bad(
        as_json({"code": "print(1)", "wall_seconds": 0}), "wall_seconds", limit_range("wall_seconds")
    ),
    "wall_seconds -1": Bad(
        as_json({"code": "print(1)", "wall_seconds": -1}), "wall_seconds", limit_range("wall_seconds")
    ),
    "wall_seconds above the maximum": Bad(
        as_json({"code": "print(1)", "wall_seconds": MAX_WALL + 1}), "wall_seconds", limit_range("wall_seconds")
    ),
    "wall_seconds 'abc'": Bad(as_json({"code": "print(1)", "wall_seconds": "abc"}), "wall_seconds"),
    "wall_seconds 'NaN'": Bad(as_json({"code": "print(1)", "wall_seconds": "NaN"}), "wall_seconds"),
    "wall_seconds 'Infinity'": Bad(as_json({"code": "print(1)", "wall_seconds": "Infinity"}), "wall_seconds"),
    "wall_seconds bare NaN literal": Bad(raw('{"code": "print(1)", "wall_seconds": NaN}'), "detail", ("JSON",)),
    "wall_seconds 1e400": Bad(raw('{"code": "print(1)", "wall_seconds": 1e400}'), "wall_seconds"),
    "wall_seconds true": Bad(
        as_json({"code": "print(1)", "wall_seconds": True}),
        "wall_seconds",
    ),
    "memory_mb 0": Bad(as_json({"code": "print(1)", "memory_mb": 0}), "memory_mb", limit_range("memory_mb")),
    "memory_mb -5": Bad(as_json({"code": "print(1)", "memory_mb": -5}), "memory_mb", limit_range("memory_mb")),
    "memory_mb 1.5": Bad(as_json({"code": "print(1)", "memory_mb": 1.5}), "memory_mb"),
    "memory_mb 'x'": Bad(as_json({"code": "print(1)", "memory_mb": "x"}), "memory_mb"),
    "memory_mb above the maximum": Bad(
        as_json({"code": "print(1)", "memory_mb": MAX_MB + 1}), "memory_mb", limit_range("memory_mb")
    ),
    "memory_mb with 5000 digits": Bad(as_json({"code": "print(1)", "memory_mb": "9" * 5000}), "memory_mb"),
    "memory_mb 'abc' in a multipart form": Bad(multipart(code="print(1)", memory_mb="abc"), "memory_mb"),
    # The body as a whole.
    "a non-JSON body sent as JSON": Bad(raw(b"code=print(1)"), "detail", ("JSON",)),
    "a truncated JSON body": Bad(raw(b'{"code": "print(1)"'), "detail"),
    "invalid UTF-8 in a JSON body": Bad(raw(b'{"code": "print(\'\xff\')"}'), "detail"),
    "a JSON array body": Bad(raw(b'[{"code": "print(1)"}]'), "detail", ("object",)),
    "a JSON string body": Bad(raw(b'"print(1)"'), "detail", ("object",)),
    "a JSON null body": Bad(raw(b"null"), "detail"),
    "an empty JSON body": Bad(raw(b""), "code"),
    "a JSON body nested 100000 deep": Bad(
        raw(b'{"code": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        "detail",
    ),
    "a JSON body over the upload limit": Bad(
        lambda api: api.post(URL, {"code": "#" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)}, format="json"),
        "detail",
        ("too large",),
    ),
    "a multipart code field over the upload limit": Bad(
        lambda api: api.post(URL, {"code": "#" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)}, format="multipart"),
        "detail",
        ("too large",),
    ),
    "a multipart body with 101 files": Bad(
        lambda api: api.post(
            URL, {f"f{i}": py_file(b"print(1)\n", name=f"m{i}.py") for i in range(101)}, format="multipart"
        ),
        "detail",
    ),
    "an unknown field": Bad(as_json({"code": "print(1)", "priority": "high"}), "priority", ("unknown",)),
    "an unknown field in a multipart form": Bad(multipart(code="print(1)", owner="mallory"), "owner", ("unknown",)),
    "a form-encoded body": Bad(
        raw(b"code=print%281%29", "application/x-www-form-urlencoded"), "detail", statuses=(400, 415)
    ),
    "a plain-text body": Bad(raw(b"print(1)", "text/plain"), "detail", statuses=(400, 415)),
    "invalid UTF-8 in a multipart code field": Bad(
        raw_multipart(code=b"print('\xff')\n"),
        "code",
    ),
}


@pytest.mark.parametrize("case", [pytest.param(c, id=name, marks=c.marks) for name, c in CASES.items()])
def test_it_answers_4xx_json_naming_the_problem_and_stores_nothing(api_client, counts, case: Bad) -> None:
    before = counts()

    response = case.send(api_client)

    assert response.status_code in case.statuses, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    named = [f for f in ((case.field,) if isinstance(case.field, str) else case.field) if f in body]
    assert named, body
    message = json.dumps(body[named[0]]).lower()
    for word in case.words:
        assert word.lower() in message, body
    assert counts() == before


def test_a_limit_error_says_what_was_asked_for(api_client) -> None:
    response = api_client.post(URL, {"code": "print(1)", "memory_mb": 99999}, format="json")

    assert response.status_code == 400
    assert response.json()["memory_mb"] == [f"must be between 32 and {MAX_MB} MiB, got 99999"]


def test_both_limits_are_reported_at_once(api_client, counts) -> None:
    response = api_client.post(URL, {"code": "print(1)", "wall_seconds": 0, "memory_mb": 0}, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"wall_seconds", "memory_mb"}
    assert counts() == (0, 0)


def test_every_unknown_field_is_named(api_client) -> None:
    response = api_client.post(URL, {"code": "print(1)", "owner": 1, "status": "succeeded"}, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"owner", "status"}
    assert (
        "allowed fields are argv, callback_url, code, entrypoint, file, memory_mb, name, preload, stdin, wait, "
        "wall_seconds" in response.json()["owner"][0]
    )


def test_an_empty_py_upload_is_rejected_as_empty(api_client, counts) -> None:
    response = api_client.post(URL, {"file": py_file(b"")}, format="multipart")

    assert response.status_code == 400
    assert {"file", "code"} & set(response.json())
    assert "empty" in json.dumps(response.json())
    assert counts() == (0, 0)
