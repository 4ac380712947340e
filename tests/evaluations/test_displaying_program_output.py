"""evaluations.output: arbitrary bytes become text that shows, but never acts on, what was written."""

from __future__ import annotations

import pytest

from evaluations.output import output_for_api, output_for_display


@pytest.mark.parametrize(
    "data, shown",
    [
        (b"a\x00b", r"a\x00b"),
        (b"\x1b[31mred\x1b[0m", r"\x1b[31mred\x1b[0m"),
        (b"ok \xff\xfe!", r"ok \xff\xfe!"),
        (b"\xe2\x82", r"\xe2\x82"),  # a multi-byte character cut short
        (b"bell\x07 bs\x08 cr\r del\x7f", r"bell\x07 bs\x08 cr\x0d del\x7f"),
        ("next line\u0085 csi\u009b".encode(), r"next line\x85 csi\x9b"),  # C1 controls
    ],
    ids=["NUL", "ANSI escape", "invalid UTF-8", "truncated UTF-8", "C0 controls and DEL", "C1 controls"],
)
def test_control_characters_and_bad_bytes_become_visible_escapes(data, shown) -> None:
    assert output_for_display(data) == shown


def test_tabs_newlines_and_unicode_text_are_kept_as_they_are() -> None:
    text = "col1\tcol2\nhéllo ✓ 日本\n"

    assert output_for_display(text.encode()) == text


def test_html_is_left_for_the_template_to_escape() -> None:
    assert output_for_display(b"<b>&amp;</b>") == "<b>&amp;</b>"


def test_a_memoryview_from_the_database_is_accepted() -> None:
    assert output_for_display(memoryview(b"x\x00")) == r"x\x00"
    assert output_for_api(memoryview(b"x\xff")) == "x\ufffd"


def test_the_api_text_replaces_invalid_bytes_and_keeps_the_rest() -> None:
    assert output_for_api(b"ok\x00 \xff\n") == "ok\x00 \ufffd\n"
