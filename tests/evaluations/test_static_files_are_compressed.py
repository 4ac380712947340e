"""Static files go gzipped to browsers that accept it; pages do not (they carry CSRF tokens)."""

from __future__ import annotations

import gzip
from pathlib import Path

from django.conf import settings

EDITOR = "vendor/codemirror/codemirror.min.js"


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_a_static_file_is_gzipped_for_a_browser_that_accepts_it(client) -> None:
    response = client.get(f"/static/{EDITOR}", HTTP_ACCEPT_ENCODING="gzip, deflate, br")

    data = body(response)
    assert response.status_code == 200 and response["Content-Encoding"] == "gzip"
    assert gzip.decompress(data) == (Path(settings.BASE_DIR) / "static" / EDITOR).read_bytes()
    assert len(data) < len(gzip.decompress(data)) / 2


def test_a_static_file_is_sent_plain_to_a_client_that_does_not_accept_gzip(client) -> None:
    response = client.get(f"/static/{EDITOR}")

    assert not response.has_header("Content-Encoding")


def test_pages_are_not_compressed(client) -> None:
    response = client.get("/runs/", HTTP_ACCEPT_ENCODING="gzip")

    assert response.status_code == 200 and not response.has_header("Content-Encoding")
