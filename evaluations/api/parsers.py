from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class SafeJSONParser(JSONParser):
    """JSON whose nesting is too deep for the parser is the caller's mistake (400), not ours; so is a
    string with a lone surrogate escape ("\\udce9"), which JSON allows but no UTF-8 text holds."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply") from None
        reject_lone_surrogates(data)
        return data


def reject_lone_surrogates(data) -> None:
    """ParseError naming the top-level field (or "detail") whose value holds a string that is not
    valid Unicode: such a string can be neither stored nor sent back in a message."""
    # Without a stack of calls: the parser may have just used up the recursion limit on this depth.
    pending = [(data, "detail")]
    if isinstance(data, dict):
        pending = [(key, "detail") for key in data] + [(value, key) for key, value in data.items()]
    while pending:
        value, field = pending.pop()
        if isinstance(value, dict):
            pending.extend((item, field) for item in (*value.keys(), *value.values()))
        elif isinstance(value, list):
            pending.extend((item, field) for item in value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                message = (
                    f"holds a lone surrogate (U+{ord(value[exc.start]):04X}), which is not text: "
                    "send UTF-8, and characters outside the BMP as surrogate pairs"
                )
                field = field if isinstance(field, str) and field.isascii() and field.isprintable() else "detail"
                raise ParseError({field: [f"JSON parse error - a string {message}"]}) from None
