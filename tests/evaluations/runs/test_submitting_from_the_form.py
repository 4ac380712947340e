"""The /submit/ page: pasting code or uploading a file queues a run; bad input shows why and stores nothing."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from evaluations.models import Run

MiB = 1024 * 1024


def py_file(content: bytes, name: str = "main.py") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/x-python")


def test_the_form_page_renders(client) -> None:
    response = client.get("/submit/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'enctype="multipart/form-data"' in html
    assert f"at most {settings.CRUCIBLE_MAX_MEMORY_MB} MiB" in html


def test_pasted_code_creates_a_run_and_redirects_to_it(client, user) -> None:
    response = client.post(
        "/submit/", {"name": "pasted", "code": "print('hi')\n", "wall_seconds": "3", "memory_mb": "64"}
    )

    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/runs/{run.pk}/"
    assert run.submission.owner == user
    assert run.submission.name == "pasted"
    assert run.submission.code == "print('hi')\n"
    assert (run.wall_seconds, run.memory_bytes) == (3.0, 64 * MiB)


def test_an_uploaded_file_creates_a_run_with_its_code(client) -> None:
    source = "print('from a file ✓')\n"

    response = client.post("/submit/", {"file": py_file(source.encode())})

    assert response.status_code == 302
    assert Run.objects.get().submission.code == source


def test_standard_input_from_the_form_reaches_the_program_with_unix_line_endings(client) -> None:
    # What a browser sends for a textarea in which the user typed "Ada⏎Lovelace⏎".
    response = client.post("/submit/", {"code": "print(input())", "stdin": "Ada\r\nLovelace\r\n"})

    assert response.status_code == 302
    assert Run.objects.get().submission.stdin == "Ada\nLovelace\n"


def test_standard_input_from_the_api_stays_byte_exact(api_client, no_worker) -> None:
    response = api_client.post(
        "/api/v1/submissions/", {"code": "print(input())", "stdin": "Ada\r\nLovelace\r"}, format="json"
    )

    assert response.status_code == 201, response.content
    assert Run.objects.get().submission.stdin == "Ada\r\nLovelace\r"


def test_whitespace_in_the_code_box_does_not_stop_an_upload(client) -> None:
    response = client.post("/submit/", {"code": "\n  \n", "file": py_file(b"print(1)\n")})

    assert response.status_code == 302
    assert Run.objects.get().submission.code == "print(1)\n"


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"code": "print(1)", "memory_mb": "0"},
            f"must be between 32 and {settings.CRUCIBLE_MAX_MEMORY_MB} MiB, got 0",
        ),
        ({"code": "print(1)", "memory_mb": "1.5"}, "Enter a whole number."),
        (
            {"code": "print(1)", "wall_seconds": "0"},
            f"must be between 0.1 and {settings.CRUCIBLE_MAX_WALL_SECONDS:g} seconds, got 0",
        ),
        ({"code": "print(1)", "wall_seconds": "nan"}, "Enter a number."),
        ({"code": ""}, "must not be empty"),
        ({"code": "   \n"}, "must not be empty"),
        ({"code": "print(1)\x00"}, "Null characters are not allowed."),
        (
            {"code": "#" * (settings.CRUCIBLE_MAX_CODE_BYTES + 1)},
            f"the limit is {settings.CRUCIBLE_MAX_CODE_BYTES} bytes",
        ),
        ({"code": "print(1)", "name": "n" * 201}, "at most 200 characters"),
    ],
    ids=[
        "memory_mb 0",
        "memory_mb 1.5",
        "wall_seconds 0",
        "wall_seconds nan",
        "empty code",
        "blank code",
        "NUL in code",
        "code too big",
        "name too long",
    ],
)
def test_bad_input_shows_the_message_and_creates_nothing(client, counts, data, message) -> None:
    response = client.post("/submit/", data)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert counts() == (0, 0)


@pytest.mark.parametrize(
    "upload, message",
    [
        (py_file(b"print('\xff')\n"), "is not UTF-8 text (invalid byte at offset 7)"),
        (
            py_file(b"print(1)\n", name="main.txt"),
            "must be a .py file or a project archive (.py, .zip, .tar.gz, .tgz, .tar), got &#x27;main.txt&#x27;",
        ),
        (
            py_file(b"#" * (settings.CRUCIBLE_MAX_CODE_BYTES + 1)),
            f"the limit is {settings.CRUCIBLE_MAX_CODE_BYTES} bytes",
        ),
    ],
    ids=["not UTF-8", "not .py", "too big"],
)
def test_a_bad_upload_shows_the_message_and_creates_nothing(client, counts, upload, message) -> None:
    upload.seek(0)  # built once, at import
    response = client.post("/submit/", {"file": upload})

    assert response.status_code == 400
    assert message in response.content.decode()
    assert counts() == (0, 0)


def test_pasting_and_uploading_at_once_is_refused(client, counts) -> None:
    response = client.post("/submit/", {"code": "print(1)", "file": py_file(b"print(2)\n")})

    assert response.status_code == 400
    assert "Paste code or upload a file, not both." in response.content.decode()
    assert counts() == (0, 0)


def test_the_form_keeps_what_was_typed_after_an_error(client) -> None:
    response = client.post("/submit/", {"name": "keep me", "code": "print('kept')", "memory_mb": "0"})

    html = response.content.decode()
    assert 'value="keep me"' in html
    assert "print(&#x27;kept&#x27;)" in html


def test_the_form_refuses_a_post_without_a_csrf_token(user, counts) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)

    response = browser.post("/submit/", {"code": "print(1)"})

    assert response.status_code == 403
    assert counts() == (0, 0)


def test_the_form_accepts_a_post_with_the_csrf_token_from_the_page(user) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    page = browser.get("/submit/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    response = browser.post("/submit/", {"code": "print(1)", "csrfmiddlewaretoken": token})

    assert response.status_code == 302
    assert Run.objects.filter(submission__owner=user).count() == 1


def test_a_paste_over_the_request_limit_says_what_the_limit_is(client, counts) -> None:
    response = client.post("/submit/", {"code": "#" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})

    assert response.status_code == 400
    assert str(settings.CRUCIBLE_MAX_CODE_BYTES) in response.content.decode() or "1 MiB" in response.content.decode()
    assert counts() == (0, 0)


def test_an_error_summary_at_the_top_links_to_each_field_in_error(client) -> None:
    response = client.post("/submit/", {"code": "print(1)", "name": "n" * 201, "wall_seconds": "nan"})

    html = response.content.decode()
    summary = html.split('id="error-summary"', 1)[1].split("</div>", 1)[0]
    assert "2 things to fix" in summary
    assert '<a href="#id_wall_seconds">Wall-time limit (s): Enter a number.</a>' in summary
    assert '<a href="#id_name">Name: Ensure this value has at most 200 characters' in summary
    assert html.index('id="error-summary"') < html.index('id="id_name"')  # at the top of the form


def test_a_refused_upload_asks_to_choose_the_file_again(client) -> None:
    response = client.post("/submit/", {"file": py_file(b"print(1)\n"), "memory_mb": "0"})

    assert response.status_code == 400
    assert "Choose your file again" in response.content.decode()


def test_an_uploaded_file_names_the_run_when_no_name_is_given(client) -> None:
    client.post("/submit/", {"file": py_file(b"print(1)\n", name="train_model.py")})
    client.post("/submit/", {"file": py_file(b"print(2)\n", name="other.py"), "name": "my name"})

    assert sorted(Run.objects.values_list("submission__name", flat=True)) == ["my name", "train_model.py"]


def test_the_number_fields_carry_the_users_own_range(client, user) -> None:
    from evaluations.models import QuotaOverride

    QuotaOverride.objects.filter(user=user).update(max_wall_seconds=7, max_memory_mb=96)

    html = client.get("/submit/").content.decode()

    assert re.search(r'<input[^>]*name="wall_seconds"[^>]*max="7"', html)
    assert re.search(r'<input[^>]*name="memory_mb"[^>]*min="32"[^>]*max="96"|max="96"[^>]*min="32"', html)
