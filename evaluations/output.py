"""Showing hostile program output safely: bytes in, text out, nothing interpreted.

Invalid UTF-8 and control characters (NUL, ANSI escapes) become visible escapes such as \\x00;
HTML escaping is the template's job (autoescape), never skipped.
"""

from __future__ import annotations

import re

# C0 controls except tab and newline, DEL, and C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def output_for_display(data: bytes) -> str:
    text = bytes(data).decode("utf-8", errors="backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def output_for_api(data: bytes) -> str:
    """Text for JSON clients: UTF-8 with U+FFFD for invalid bytes (exact bytes are in *_base64)."""
    return bytes(data).decode("utf-8", errors="replace")
