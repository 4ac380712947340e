"""The submission form (evaluations/runs/forms.py), fed any values and uploads by hypothesis through
its page: a 4xx or a valid result (a redirect to the new run), never a 500 or an exception."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from evaluations.runs.forms import SubmissionForm
from tests.support.fuzz import FUZZ, form_fields_of, form_text

pytestmark = pytest.mark.django_db

FIELDS = ["name", "code", "entrypoint", "argv", "stdin", "wall_seconds", "memory_mb", "preload"]
uploads = st.tuples(st.sampled_from(["main.py", "p.zip", "p.tar.gz", "p.tar", "notes.txt"]), st.binary(max_size=64))


@pytest.fixture
def browser(user):
    client = Client()
    client.force_login(user)
    return client


@FUZZ
@given(
    fields=form_fields_of(FIELDS)
    | st.fixed_dictionaries({"code": st.just("print(1)\n")}, optional=dict.fromkeys(FIELDS[2:] + ["name"], form_text)),
    upload=st.none() | uploads,
)
def test_the_submission_form(browser, no_worker, fields, upload) -> None:
    if upload is not None:
        fields["file"] = SimpleUploadedFile(*upload)

    response = browser.post("/submit/", fields)

    # 200: an empty POST shows the form again; 302: to the new run.
    assert response.status_code in (200, 302) or 400 <= response.status_code < 500, response.status_code


@FUZZ
@given(fields=form_fields_of(FIELDS))
def test_the_form_itself_cleans_any_values(fields) -> None:
    form = SubmissionForm(fields)

    assert isinstance(form.is_valid(), bool)


def test_arguments_that_cannot_be_split_show_the_form_again(browser, counts) -> None:
    response = browser.post("/submit/", {"code": "print(1)\n", "argv": "it's"})

    assert response.status_code == 400
    assert "cannot be split into arguments" in response.content.decode()
    assert counts() == (0, 0)
