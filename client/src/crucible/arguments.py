"""Command-line argument types shared by the `crucible` commands."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable


def object_id(kind: str) -> Callable[[str], int]:
    """An argparse type: a run (batch) id, or its page's or API URL as the browser shows it."""
    pattern = re.compile(rf"^(?:\d+|\S*/{kind}/(\d+)/?(?:[?#]\S*)?)$")

    def parse(text: str) -> int:
        found = pattern.match(text.strip())
        if not found:
            raise argparse.ArgumentTypeError(f"{text!r} is neither an id nor a URL ending in /{kind}/<id>/")
        return int(found.group(1) or text.strip())

    return parse
