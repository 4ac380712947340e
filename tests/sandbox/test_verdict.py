"""Unit tests of sandbox.verdict: how an exit status reads, and which reason a run ends with."""

from __future__ import annotations

import pytest

from sandbox.verdict import exit_status


@pytest.mark.parametrize(
    ("returncode", "expected"),
    [
        (0, (0, None)),
        (3, (3, None)),
        (-9, (137, 9)),  # subprocess: killed by SIGKILL
        (137, (137, 9)),  # runsc and docker report the same death so
        (128, (128, None)),
        (None, (None, None)),
    ],
)
def test_an_exit_status_reads_as_a_shell_reports_it(returncode: int | None, expected: tuple[int, int]) -> None:
    assert exit_status(returncode) == expected
