"""Reads for a run's whole story on its page and for comparing two runs: what went in (entry point,
arguments, stdin, the project's files, the image), the other runs of its submission, and a diff
of two runs' output."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError

from evaluations.models import Run
from evaluations.runs.combined_output import output_in_order
from evaluations.runs.validation import project_files

STDIN_SHOWN_CHARS = 10_000  # more is summarised: the page is for reading, the API has all of it
DIFF_MAX_BYTES = 512 * 1024  # of each run's output: a diff of more would not be read on a page
DIFF_MAX_LINES = 3000


@dataclass(frozen=True)
class ProjectFile:
    path: str
    size: int


def image_name(digest: str) -> str:
    """The image a digest belongs to ("python3.11"), from the images built here; "" if unknown."""
    if not digest:
        return ""
    for manifest in Path(settings.CRUCIBLE_IMAGES_DIR).glob("*/manifest.json"):
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        if data.get("digest") == digest:
            return str(data.get("name", ""))
    return ""


def project_file_list(run: Run) -> dict[str, bytes] | None:
    """The uploaded project's files by path, or None for pasted code or an expired upload."""
    submission = run.submission
    if submission.archive is None or submission.archive_expired_at:
        return None
    try:
        return project_files(
            archive=bytes(submission.archive), archive_name=submission.archive_name, entrypoint=submission.entrypoint
        )
    except ValidationError:
        return None  # checked at upload; a later, stricter limit must not break the page


def run_inputs(run: Run) -> dict:
    submission = run.submission
    files = project_file_list(run)
    stdin = submission.stdin
    return {
        "entrypoint": submission.entrypoint,
        "argv": submission.argv,
        "stdin": stdin[:STDIN_SHOWN_CHARS],
        "stdin_cut": len(stdin) > STDIN_SHOWN_CHARS,
        "stdin_chars": len(stdin),
        "archive_name": submission.archive_name,
        "files": None if files is None else [ProjectFile(path, len(data)) for path, data in sorted(files.items())],
        "image": image_name(run.image_digest),
    }


def submission_runs(run: Run, limit: int = 50) -> list[Run]:
    """The runs of the run's submission, newest first (whoever may read one may read them all)."""
    return list(Run.objects.filter(submission_id=run.submission_id).order_by("-queued_at", "-pk")[:limit])


def combined_text(run: Run) -> tuple[str, bool]:
    """The run's combined output as text for a diff, and whether it was cut to DIFF_MAX_BYTES."""
    if run.output_expired_at:
        return "", False
    out = bytearray()
    for part in output_in_order(run):
        out += part
        if len(out) > DIFF_MAX_BYTES:
            return out[:DIFF_MAX_BYTES].decode("utf-8", "replace"), True
    return out.decode("utf-8", "replace"), False


def output_diff(a: Run, b: Run) -> dict:
    text_a, cut_a = combined_text(a)
    text_b, cut_b = combined_text(b)
    lines = list(
        difflib.unified_diff(text_a.splitlines(), text_b.splitlines(), f"run #{a.pk}", f"run #{b.pk}", lineterm="", n=3)
    )
    return {
        "same": text_a == text_b,
        "lines": lines[:DIFF_MAX_LINES],
        "lines_cut": len(lines) > DIFF_MAX_LINES,
        "cut": cut_a or cut_b,
        "expired": bool(a.output_expired_at or b.output_expired_at),
    }
