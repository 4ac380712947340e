"""Program output in the API: invalid bytes never break the JSON text, the exact bytes stay in base64."""

from __future__ import annotations

from evaluations.api.serializers import output_text


def test_the_api_text_replaces_invalid_bytes_and_keeps_the_rest() -> None:
    assert output_text(b"ok\x00 \xff\n") == "ok\x00 \ufffd\n"


def test_a_memoryview_from_the_database_is_accepted() -> None:
    assert output_text(memoryview(b"x\xff")) == "x\ufffd"
