"""Showing hostile program output safely: bytes in, text out, nothing interpreted.

Invalid UTF-8 and control characters (NUL, ANSI escapes) become visible escapes such as \\x00;
HTML escaping is the template's job (autoescape), never skipped.
"""

from __future__ import annotations

import re

# C0 controls except tab and newline, DEL, C1 controls, and the Unicode bidi/zero-width marks
# that could make output look like something it is not.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def output_for_display(data: bytes) -> str:
    text = bytes(data).decode("utf-8", errors="backslashreplace")
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def output_for_api(data: bytes) -> str:
    """Text for JSON clients: UTF-8 with U+FFFD for invalid bytes (exact bytes are in *_base64)."""
    return bytes(data).decode("utf-8", errors="replace")
