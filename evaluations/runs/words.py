"""What pages call a run's states and sizes: reasons in words, sizes in binary units (KiB, MiB,
GiB), limits as people read them, and peak memory as the owner reads it. static/js/status.js gets
the same words from the page (`words_for_pages`), so a live update reads like a rendered page."""

from __future__ import annotations

import re
from typing import Any

from sandbox.gvisor import SENTRY_OVERHEAD_BYTES

# Empty: the status or the exit code already says it (no "cancelled cancelled").
REASON_WORDS = {
    "exit_code": "",
    "timeout": "Time limit",
    "memory_limit": "Out of memory",
    "output_limit": "Output limit",
    "pids_limit": "Too many processes",
    "disk_limit": "Disk full",
    "cancelled": "",
    "worker_lost": "Worker lost",
    "sandbox_error": "Sandbox failed",
    "rejected": "Rejected",
    "storage_error": "Output not stored",
}
# Engines that run gVisor, whose own memory counts in the run's cgroup on top of the run's limit.
GVISOR_ENGINES = frozenset({"runsc", "docker"})
_UNITS = ("KiB", "MiB", "GiB", "TiB")
_BYTES_IN_TEXT = re.compile(r"\b(\d{4,}) bytes\b")


def reason_words(reason: str | None) -> str:
    if not reason:
        return ""
    return REASON_WORDS.get(reason, reason.replace("_", " ").capitalize())


def size_words(n: int | float | None) -> str:
    """1536 -> "1.5 KiB", 134217728 -> "128 MiB": one decimal at most, none when whole."""
    if n is None:
        return "–"
    n = int(n)
    if abs(n) < 1024:
        return f"{n} B"
    value = float(n)
    for unit in _UNITS:  # noqa: B007 (the unit the loop stops at is the one to show)
        value /= 1024
        if abs(value) < 1024:
            break
    shown = f"{value:.1f}".removesuffix(".0")
    return f"{shown} {unit}"


def detail_words(detail: str | None) -> str:
    """A run's detail with byte counts in binary units ("memory limit of 128 MiB exceeded")."""
    return _BYTES_IN_TEXT.sub(lambda m: size_words(int(m.group(1))), detail or "")


def memory_overhead_bytes(engine: str | None) -> int:
    """What a run's sandbox may use beyond the run's memory limit for gVisor itself."""
    return SENTRY_OVERHEAD_BYTES if engine in GVISOR_ENGINES else 0


def peak_memory_words(*, peak: int | None, limit: int, reason: str | None, engine: str | None) -> str:
    """The peak as the owner reads it: a run stopped for memory peaked at its limit, whatever gVisor's
    own memory added; any other peak is the sandbox's, gVisor included, and says so."""
    if reason == "memory_limit":
        return f"{size_words(limit)} peak memory: the limit, where the program was stopped"
    if peak is None:
        return "peak memory not measured"
    overhead = memory_overhead_bytes(engine)
    if not overhead:
        return f"{size_words(peak)} peak memory"
    return (
        f"{size_words(peak)} peak memory, gVisor's own included "
        f"(it has {size_words(overhead)} beyond the limit for that)"
    )


def words_for_pages() -> dict[str, Any]:
    """For pages whose scripts render statuses live (json_script "run-words")."""
    return {"reasons": REASON_WORDS, "gvisor_engines": sorted(GVISOR_ENGINES), "overhead_bytes": SENTRY_OVERHEAD_BYTES}
