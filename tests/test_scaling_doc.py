"""docs/scaling.md names only settings that exist, links only files that exist, and is linked from
the README: an operator copying from it gets no setting that is silently ignored."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "scaling.md"
SETTING = re.compile(r"\bCRUCIBLE_[A-Z0-9_]*[A-Z0-9]\b")
READ = re.compile(r"\benv_(str|int|float|bool|list)\(\s*\"(CRUCIBLE_[A-Z0-9_]+)\"")


def _read_settings() -> dict[str, str]:
    """Each CRUCIBLE_* variable settings.py reads, with the reader (str, int, ...) that reads it."""
    text = (ROOT / "crucible_site" / "settings.py").read_text()
    return {name: reader for reader, name in READ.findall(text)}


def _process_variables() -> set[str]:
    # The Procfile's commands read a few variables themselves (CRUCIBLE_WORKERS: the concurrency).
    return set(SETTING.findall((ROOT / "Procfile").read_text()))


def test_every_setting_the_scaling_doc_names_is_read() -> None:
    read = _read_settings()
    known = set(read) | _process_variables()
    named = set(SETTING.findall(DOC.read_text()))
    unknown = set()
    for name in named:
        base = name.removesuffix("_FILE")
        if name in known:
            continue
        # <NAME>_FILE is honoured for every setting read as a string (crucible_site/env.py).
        if name != base and read.get(base) == "str":
            continue
        unknown.add(name)
    assert named, "the doc names no setting at all: the pattern is wrong"
    assert not unknown, f"docs/scaling.md names settings that nothing reads: {sorted(unknown)}"


def test_files_the_scaling_doc_links_exist() -> None:
    targets = re.findall(r"\]\(([^)\s]+)\)", DOC.read_text())
    local = [t.partition("#")[0] for t in targets if not re.match(r"[a-z]+://", t) and not t.startswith("#")]
    assert local, "the doc links no other document: the pattern is wrong"
    missing = [t for t in local if not (DOC.parent / t).exists()]
    assert not missing, f"docs/scaling.md links files that do not exist: {missing}"


def test_the_readme_links_the_scaling_doc() -> None:
    assert "(docs/scaling.md)" in (ROOT / "README.md").read_text()
