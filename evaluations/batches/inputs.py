"""A batch's inputs and configurations as users give them: JSON lists, or an uploaded CSV/JSON file.

Each is checked into frozen specs; errors name the item (`inputs[3].argv`) and what is allowed.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass

from django.core.exceptions import ValidationError

from evaluations.runs.uploads import argv_from_text

INPUT_KEYS = ("label", "stdin", "stdin_file", "argv")
CONFIG_KEYS = ("label", "wall_seconds", "memory_mb")
MAX_LABEL_CHARS = 200


@dataclass(frozen=True)
class InputSpec:
    label: str = ""
    stdin: str | None = None  # None: the submission's stdin
    stdin_file: str = ""  # a file of the project, as stdin
    argv: tuple[str, ...] = ()  # after the submission's arguments


@dataclass(frozen=True)
class ConfigSpec:
    label: str = ""
    wall_seconds: float | None = None  # None: the default
    memory_mb: int | None = None


def _object(item, *, where: str, keys: tuple[str, ...], strict: bool) -> dict:
    """The item's values; an empty cell of a file is a value left out (in JSON, leave it out)."""
    if not isinstance(item, dict):
        raise ValidationError({where: f"must be an object with some of: {', '.join(keys)}"})
    unknown = sorted(set(item) - set(keys))
    if unknown:
        raise ValidationError({where: f"unknown keys {', '.join(unknown)}; allowed: {', '.join(keys)}"})
    if strict:
        for key, value in item.items():
            if value is None:
                raise ValidationError({f"{where}.{key}": "must not be null: leave it out instead"})
    return {k: v for k, v in item.items() if v is not None and v != ""}


def _label(value, *, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_LABEL_CHARS or "\x00" in value:
        raise ValidationError({f"{where}.label": f"must be text of at most {MAX_LABEL_CHARS} characters"})
    return value


def _texts_check(values: dict, *, where: str) -> None:
    """Every string is text that UTF-8 can hold (JSON's "\udce9" is a string but no text)."""
    for key, value in values.items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValidationError({f"{where}.{key}": "holds a lone surrogate, which is not text"}) from None


def json_rows(text: str, *, field: str) -> list:
    """A JSON list from text a user sent; ValidationError naming the field otherwise."""
    try:
        rows = json.loads(text)
    except RecursionError:
        raise ValidationError({field: "is JSON nested too deeply"}) from None
    except ValueError as exc:
        raise ValidationError({field: f"is not valid JSON: {exc}"}) from None
    if not isinstance(rows, list):
        raise ValidationError({field: "must hold a JSON list of objects"})
    return rows


def input_spec(item, *, where: str, strict: bool = True) -> InputSpec:
    values = _object(item, where=where, keys=INPUT_KEYS, strict=strict)
    _texts_check(values, where=where)
    argv = values.get("argv", [])
    if isinstance(argv, str):
        argv = argv_from_text(argv, field=f"{where}.argv")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValidationError({f"{where}.argv": "must be a list of strings or one line of shell-quoted arguments"})
    stdin = values.get("stdin")
    if stdin is not None and not isinstance(stdin, str):
        raise ValidationError({f"{where}.stdin": "must be text"})
    stdin_file = values.get("stdin_file", "")
    if not isinstance(stdin_file, str):
        raise ValidationError({f"{where}.stdin_file": "must be the path of a file in the project"})
    if stdin is not None and stdin_file:
        raise ValidationError({where: "give at most one of stdin and stdin_file"})
    return InputSpec(
        label=_label(values.get("label", ""), where=where), stdin=stdin, stdin_file=stdin_file, argv=tuple(argv)
    )


def config_spec(item, *, where: str, strict: bool = True) -> ConfigSpec:
    """strict: JSON, whose numbers must be numbers (a file's cells are all text)."""
    values = _object(item, where=where, keys=CONFIG_KEYS, strict=strict)
    _texts_check(values, where=where)
    wall, memory = values.get("wall_seconds"), values.get("memory_mb")
    if strict:
        for key in ("wall_seconds", "memory_mb"):
            value = values.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValidationError({f"{where}.{key}": "must be a number"})
    try:
        wall = None if wall is None else float(wall)
    except (TypeError, ValueError):
        raise ValidationError({f"{where}.wall_seconds": "must be a number of seconds"}) from None
    if wall is not None and not math.isfinite(wall):
        raise ValidationError({f"{where}.wall_seconds": "must be a number of seconds"})
    if isinstance(memory, bool) or (memory is not None and not _whole(memory)):
        raise ValidationError({f"{where}.memory_mb": "must be a whole number of MiB"})
    return ConfigSpec(
        label=_label(values.get("label", ""), where=where),
        wall_seconds=wall,
        memory_mb=None if memory is None else int(float(memory)),
    )


def _whole(value) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and number == int(number)


def input_specs(items, *, field: str = "inputs", strict: bool = True) -> list[InputSpec]:
    if not isinstance(items, list):
        raise ValidationError({field: "must be a list of objects"})
    return [input_spec(item, where=f"{field}[{i}]", strict=strict) for i, item in enumerate(items)]


def config_specs(items, *, field: str = "configs", strict: bool = True) -> list[ConfigSpec]:
    if not isinstance(items, list):
        raise ValidationError({field: "must be a list of objects"})
    return [config_spec(item, where=f"{field}[{i}]", strict=strict) for i, item in enumerate(items)]


def rows_from_file(data: bytes, *, name: str, field: str) -> list:
    """A list of objects from an uploaded .json file (a list) or .csv file (a header row naming the
    keys); ValidationError naming the field otherwise."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError({field: f"is not UTF-8 text (invalid byte at offset {exc.start})"}) from None
    if name.lower().endswith(".json"):
        return json_rows(text, field=field)
    if name.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            rows = [dict(row) for row in reader]
        except csv.Error as exc:
            raise ValidationError({field: f"is not valid CSV: {exc}"}) from None
        if any(None in row for row in rows):
            raise ValidationError({field: "has a row with more cells than its header row"})
        return rows
    raise ValidationError({field: f"must be a .csv or .json file, got {name!r}"})
