"""Archive entries the sandbox could not write (a name that is not UTF-8, a path component longer
than a file system allows) are refused at upload with a 400 naming the entry, not a 500 or a run
that ends as our `error`."""

from __future__ import annotations

import io
import tarfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

pytestmark = pytest.mark.django_db

SUBMIT = "/api/v1/submissions/"
MAIN = b"print(1)\n"


def tar_bytes(names: list[str]) -> bytes:
    """A tar whose entries have these names; lone surrogates in a name stand for its raw bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, errors="surrogateescape") as tf:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(MAIN)
            tf.addfile(info, io.BytesIO(MAIN))
    return buf.getvalue()


def submit(api_client, archive: bytes, entrypoint: str):
    upload = SimpleUploadedFile("proj.tar", archive, content_type="application/x-tar")
    return api_client.post(SUBMIT, {"file": upload, "entrypoint": entrypoint}, format="multipart")


NOT_UTF8 = b"caf\xe9.py".decode("utf-8", "surrogateescape")


@pytest.mark.parametrize("entrypoint", ["main.py", "missing.py"])
def test_an_entry_name_that_is_not_utf8_is_refused_naming_it_escaped(entrypoint, api_client, counts) -> None:
    response = submit(api_client, tar_bytes(["main.py", NOT_UTF8]), entrypoint)

    assert response.status_code == 400, response.content
    assert response.json() == {"file": ["entry 'caf\\xe9.py': the name is not valid UTF-8"]}
    assert counts() == (0, 0)


def test_a_path_component_longer_than_255_bytes_is_refused_naming_it(api_client, counts) -> None:
    long_name = "d" * 254 + "é" + "/x.py"  # 256 bytes in UTF-8, 255 characters

    response = submit(api_client, tar_bytes(["main.py", long_name]), "main.py")

    assert response.status_code == 400, response.content
    [message] = response.json()["file"]
    assert message.startswith("entry 'ddd") and "x.py'" in message
    assert "longer than 255 bytes" in message
    assert counts() == (0, 0)


def test_a_255_byte_component_is_still_accepted(api_client, no_worker) -> None:
    response = submit(api_client, tar_bytes(["main.py", "d" * 252 + ".py"]), "main.py")

    assert response.status_code == 201, response.content


def test_an_entry_point_with_a_component_over_255_bytes_is_refused(api_client, counts) -> None:
    entrypoint = "é" * 128 + "/main.py"  # 256 bytes, 128 characters

    response = submit(api_client, tar_bytes(["main.py"]), entrypoint)

    assert response.status_code == 400, response.content
    [message] = response.json()["entrypoint"]
    assert "longer than 255 bytes" in message
    assert counts() == (0, 0)
