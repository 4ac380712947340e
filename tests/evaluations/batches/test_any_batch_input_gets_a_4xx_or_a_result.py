"""The batch API and form fed any JSON, form and file by hypothesis: a 4xx or a batch, never a 500."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fuzz import FUZZ, fields_of, form_text, json_text, json_values

pytestmark = pytest.mark.django_db

BATCHES = "/api/v1/batches/"
item = st.dictionaries(
    st.sampled_from(["label", "stdin", "stdin_file", "argv", "wall_seconds", "memory_mb", "other"]),
    json_values,
    max_size=3,
)
LIKELY = {
    "code": st.sampled_from(["print(1)\n", ""]) | json_text,
    "inputs": st.lists(item, max_size=3) | json_values,
    "configs": st.lists(item, max_size=2) | json_values,
    "argv": st.lists(st.text(max_size=5), max_size=2) | json_text,
    "callback_url": st.sampled_from(["https://example.org/h", "http://[::1", "ftp://x", ""]) | json_text,
    "name": json_text,
}


def assert_4xx_or(response, *ok: int) -> None:
    assert response.status_code in ok or 400 <= response.status_code < 500, (response.status_code, response.content)


@FUZZ
@given(body=fields_of(LIKELY))
def test_a_json_batch(api_client, no_worker, body) -> None:
    response = api_client.post(BATCHES, json.dumps(body, ensure_ascii=True), content_type="application/json")

    assert_4xx_or(response, 201)


@FUZZ
@given(
    name=st.sampled_from(["in.csv", "in.json", "in"]),
    data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    configs=form_text,
)
def test_a_form_batch_with_any_inputs_file(client, no_worker, name, data, configs) -> None:
    response = client.post(
        "/batches/new/",
        {
            "code": "print(1)\n",
            "inputs_file": SimpleUploadedFile(name, data),
            "configs_file": SimpleUploadedFile("c.json", configs.encode()),
        },
    )

    assert_4xx_or(response, 302)
