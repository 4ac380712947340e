"""Project uploads (.zip / .tar.gz with an entry point, argv and stdin): checked before anything is
stored, a rejected archive names the offending entry, and an accepted one runs in the sandbox."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from evaluations.models import Run, RunStatus
from evaluations.runs import execution, logstore

SUBMIT = "/api/v1/submissions/"

PROJECT = {
    "proj/main.py": b"import sys\nfrom helpers import greet\nprint(greet(sys.argv[1:]))\n"
    b"print('stdin:', sys.stdin.read().strip())\nprint(open('data/n.txt').read().strip())\n",
    "proj/helpers.py": b"def greet(args):\n    return 'hello ' + '|'.join(args)\n",
    "proj/data/n.txt": b"42\n",
}


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_gz_with_symlink() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = b"print(1)\n"
        info = tarfile.TarInfo("main.py")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("shadow")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        tf.addfile(link)
    return buf.getvalue()


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


@pytest.mark.django_db(transaction=True)  # the worker stores output on connections of its own
def test_a_zip_project_runs_with_its_entry_point_argv_and_stdin(api_client, user) -> None:
    response = api_client.post(
        SUBMIT,
        {
            "file": upload("proj.zip", zip_bytes(PROJECT)),
            "entrypoint": "main.py",
            "argv": 'a "b c"',
            "stdin": "from stdin\n",
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    run = Run.objects.get(pk=response.json()["id"])
    assert run.submission.archive_name == "proj.zip"
    assert run.submission.argv == ["a", "b c"]
    assert run.submission.code == PROJECT["proj/main.py"].decode()

    assert execution.run_in_sandbox(run.pk) is True

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, (run.reason, run.detail, logstore.log_read(run, "stderr"))
    assert logstore.log_read(run, "stdout") == b"hello a|b c\nstdin: from stdin\n42\n"


def test_json_takes_argv_as_a_list(api_client) -> None:
    response = api_client.post(SUBMIT, {"code": "print(1)", "argv": ["x", "y z"]}, format="json")

    assert response.status_code == 201
    assert Run.objects.get(pk=response.json()["id"]).submission.argv == ["x", "y z"]


@pytest.mark.parametrize(
    ("name", "data", "extra", "field", "message"),
    [
        ("evil.zip", zip_bytes({"main.py": b"print(1)", "../evil.py": b"x"}), {}, "file", "../evil.py"),
        ("abs.zip", zip_bytes({"main.py": b"print(1)", "/etc/cron.d/x": b"x"}), {}, "file", "/etc/cron.d/x"),
        ("link.tar.gz", tar_gz_with_symlink(), {}, "file", "shadow"),
        ("proj.zip", zip_bytes(PROJECT), {"entrypoint": "run.py"}, "entrypoint", "main.py"),
        ("proj.zip", zip_bytes(PROJECT), {"entrypoint": "../main.py"}, "entrypoint", "relative path"),
        ("broken.zip", b"PK\x03\x04 not really a zip", {}, "file", ""),
        ("proj.rar", b"Rar!", {}, "file", ".zip"),
        ("proj.zip", zip_bytes(PROJECT), {"argv": 'unbalanced "quote'}, "argv", "quotation"),
    ],
    ids=["dot-dot", "absolute", "symlink", "missing entry point", "entry point outside", "corrupt", "rar", "argv"],
)
def test_a_rejected_project_answers_400_naming_the_problem_and_stores_nothing(
    api_client, counts, name, data, extra, field, message
) -> None:
    before = counts()

    response = api_client.post(SUBMIT, {"file": upload(name, data), **extra}, format="multipart")

    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body, body
    assert message in str(body[field]), body
    assert counts() == before


def test_an_archive_over_the_upload_limit_is_refused(api_client, counts, settings) -> None:
    settings.CRUCIBLE_MAX_UPLOAD_BYTES = 1000
    before = counts()

    response = api_client.post(SUBMIT, {"file": upload("big.zip", b"x" * 1001)}, format="multipart")

    assert response.status_code == 400
    assert "the limit for a project is 1000 bytes" in str(response.json()["file"])
    assert counts() == before


def test_stdin_over_its_limit_is_refused(api_client, counts, settings) -> None:
    settings.CRUCIBLE_MAX_STDIN_BYTES = 10
    before = counts()

    response = api_client.post(SUBMIT, {"code": "print(1)", "stdin": "x" * 11}, format="json")

    assert response.status_code == 400
    assert "the limit is 10 bytes" in str(response.json()["stdin"])
    assert counts() == before


def test_the_form_takes_a_project_with_arguments(client, user) -> None:
    response = client.post(
        "/submit/",
        {"file": upload("p.tar.gz", _tar_gz({"main.py": b"import sys; print(sys.argv[1:])"})), "argv": "--n 3"},
    )

    assert response.status_code == 302, response.content.decode()[-2000:]
    run = Run.objects.get(submission__owner=user)
    assert run.submission.argv == ["--n", "3"]
    assert run.submission.archive_name == "p.tar.gz"


def _tar_gz(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()
