"""Run pages speak one unit system (B, KiB, MiB, GiB) and give reasons and limits in words; a run
stopped for memory never reads as having used more than its limit."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from evaluations.runs.words import detail_words, reason_words, size_words

MiB = 1024 * 1024


@pytest.mark.parametrize(
    "n, words",
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (128 * MiB, "128 MiB"),
        (84295680, "80.4 MiB"),
        (3 * 1024 * MiB, "3 GiB"),
    ],
)
def test_sizes_read_in_binary_units_without_needless_decimals(n, words) -> None:
    assert size_words(n) == words


def test_byte_counts_in_a_detail_read_in_mib() -> None:
    assert detail_words("memory limit of 134217728 bytes exceeded") == "memory limit of 128 MiB exceeded"
    assert detail_words("exited with code 1") == "exited with code 1"


def test_reasons_read_as_words_and_say_nothing_the_status_says_already() -> None:
    assert reason_words("memory_limit") == "Out of memory"
    assert reason_words("timeout") == "Time limit"
    assert reason_words("cancelled") == "" and reason_words("exit_code") == "" and reason_words(None) == ""


def finished(make_run, user, **fields):
    now = timezone.now()
    return make_run(user, started_at=now, finished_at=now, cpu_seconds=0.3, **fields)


def test_a_run_stopped_for_memory_reads_its_limit_as_its_peak(client, user, make_run) -> None:
    run = finished(
        make_run,
        user,
        status="failed",
        reason="memory_limit",
        detail="memory limit of 67108864 bytes exceeded",
        memory_bytes=64 * MiB,
        peak_memory_bytes=96 * MiB,  # gVisor's own memory on top of the program's 64 MiB
        engine="runsc",
    )

    html = client.get(f"/runs/{run.pk}/").content.decode()

    assert ">Out of memory</span>" in html
    assert "memory limit of 64 MiB exceeded" in html
    assert "64 MiB peak memory: the limit, where the program was stopped" in html
    # MB as a unit, a word of its own: random CSRF tokens on the page may hold the letters.
    assert "96 MiB" not in html and not re.search(r"\bMB\b", html)


def test_a_cancelled_run_does_not_say_cancelled_twice(client, user, make_run) -> None:
    finished(make_run, user, status="cancelled", reason="cancelled", detail="cancelled")

    html = client.get("/runs/").content.decode()

    cell = re.search(r'<td class="status-cell"[^>]*>(.*?)</td>', html, re.S).group(1)
    assert re.sub(r"<[^>]+>", "", cell).strip() == "cancelled"


def test_other_peaks_say_that_gvisor_is_included(client, user, make_run) -> None:
    run = finished(make_run, user, status="succeeded", peak_memory_bytes=21512192, engine="runsc")

    html = client.get(f"/runs/{run.pk}/").content.decode()

    assert "20.5 MiB peak memory, gVisor&#x27;s own included (it has 32 MiB beyond the limit for that)" in html
