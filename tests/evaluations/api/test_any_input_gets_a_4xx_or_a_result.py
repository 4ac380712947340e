"""Every API input serializer (evaluations/api/serializers.py), fed any JSON, form or query string by
hypothesis, through its view: a 4xx or a valid result, never a 500 or an exception."""

from __future__ import annotations

import io
import json
import tarfile
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fuzz import FUZZ, fields_of, form_fields_of, form_text, json_text, json_values

pytestmark = pytest.mark.django_db

SUBMIT = "/api/v1/submissions/"

code = st.sampled_from(["print(1)\n", "", " ", "\x00", "import sys; sys.exit(3)"]) | st.text(max_size=20)
# Mostly valid values, and some that are not.
LIKELY = {
    "name": st.text(max_size=10) | json_text,
    "code": code,
    "entrypoint": st.sampled_from(["main.py", "a/b.py"]) | json_text,
    "stdin": st.text(max_size=10) | json_text,
    "argv": st.lists(st.text(max_size=5) | json_text, max_size=3) | json_text,
    "wall_seconds": st.sampled_from([1, 2.5, 0.01, 1e300]) | st.floats(allow_nan=False, allow_infinity=False),
    "memory_mb": st.sampled_from([64, 128, 0, 2**64]) | st.integers(min_value=-(2**70), max_value=2**70),
    "preload": st.booleans() | json_text,
}
FORM_FIELDS = ["name", "code", "entrypoint", "stdin", "argv", "wall_seconds", "memory_mb", "preload"]


def as_json(body) -> str:
    return json.dumps(body, ensure_ascii=True)  # lone surrogates become "\udcXX" escapes


def assert_4xx_or(response, *ok: int) -> None:
    assert response.status_code in ok or 400 <= response.status_code < 500, (response.status_code, response.content)


@FUZZ
@given(body=fields_of(LIKELY) | json_text | st.lists(json_text, max_size=2))
def test_a_json_submission(api_client, no_worker, body) -> None:
    response = api_client.post(SUBMIT, as_json(body), content_type="application/json")

    assert_4xx_or(response, 201)
    if response.status_code == 201:
        assert response.json()["status"] == "queued"


@FUZZ
@given(field=st.sampled_from([*LIKELY, "file", "other"]), value=json_values)
def test_a_good_json_submission_with_one_odd_field(api_client, no_worker, field, value) -> None:
    body = {"code": "print(1)\n", "name": "fine", field: value}

    response = api_client.post(SUBMIT, as_json(body), content_type="application/json")

    assert_4xx_or(response, 201)


def tar_of(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, errors="surrogateescape") as tf:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 9
            tf.addfile(info, io.BytesIO(b"print(1)\n"))
    return buf.getvalue()


path_chars = st.sampled_from(["a", "é", "/", ".", "\\", "\udce9", "\x00", " ", "main.py", "d" * 128])
uploads = st.tuples(
    st.sampled_from(["main.py", "proj.tar", "proj.tar.gz", "proj.zip", "proj.txt", ""]),
    st.binary(max_size=64) | st.lists(st.lists(path_chars, max_size=4).map("".join), max_size=3).map(tar_of),
)


@FUZZ
@given(fields=form_fields_of(FORM_FIELDS), upload=st.none() | uploads)
def test_a_multipart_submission(api_client, no_worker, fields, upload) -> None:
    if upload is not None:
        name, data = upload
        fields["file"] = SimpleUploadedFile(name or "upload", data)

    response = api_client.post(SUBMIT, fields, format="multipart")

    assert_4xx_or(response, 201)


@FUZZ
@given(body=fields_of({"shared_with_team": st.booleans()}))
def test_sharing_a_submission(api_client, user, make_run, body) -> None:
    run = make_run(user)

    response = api_client.patch(
        f"/api/v1/submissions/{run.submission_id}/", as_json(body), content_type="application/json"
    )

    assert_4xx_or(response, 200)


@FUZZ
@given(body=fields_of({"wall_seconds": st.floats(), "memory_mb": st.integers()}))
def test_running_a_submission_again(api_client, user, make_run, no_worker, body) -> None:
    run = make_run(user)

    response = api_client.post(
        f"/api/v1/submissions/{run.submission_id}/runs/", as_json(body), content_type="application/json"
    )

    assert_4xx_or(response, 201)


query_values = form_text | st.integers(min_value=-(2**70), max_value=2**70).map(str)


@FUZZ
@given(query=st.dictionaries(st.sampled_from(["stream", "offset", "limit", "download"]) | form_text, query_values))
def test_reading_a_runs_logs(api_client, user, make_run, query) -> None:
    run = make_run(user, stdout=b"hello\n")
    query = {"stream": "stdout", **query} if "stream" not in query else query

    response = api_client.get(f"/api/v1/runs/{run.pk}/logs/?{urlencode(query)}")

    assert_4xx_or(response, 200)


@FUZZ
@given(query=st.dictionaries(st.sampled_from(["cursor", "page_size"]) | form_text, query_values))
def test_listing_runs(api_client, user, make_run, query) -> None:
    make_run(user)

    response = api_client.get(f"/api/v1/runs/?{urlencode(query)}")

    assert_4xx_or(response, 200)
