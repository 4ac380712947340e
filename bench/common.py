"""What the benchmarks share: their error, retries, statistics and the machine/commit they ran on.

No Django and no sandbox import here: bench/sandbox.py keeps bench/ at the end of sys.path (its own
name would shadow the `sandbox` package), and imports this module from there.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

# The system interpreter, as in the sandbox's rootfs (/usr/bin/python3) — not a PATH shim such as
# pyenv's, whose bash wrapper would be timed too (bench/README.md).
PYTHON3 = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or "python3"


class BenchError(RuntimeError):
    """A measurement that did not go as it must (a run ended wrongly, output out of order...)."""


def attempt(
    name: str,
    sample: Callable[[], Any],
    failures: list[dict[str, str]],
    tries: int = 3,
    retry_on: tuple[type[BaseException], ...] = (BenchError,),
) -> Any:
    """sample(), retried after a failure (each failure is recorded and printed; none is hidden).
    The last failure is raised as a BenchError."""
    for n in range(1, tries + 1):
        try:
            return sample()
        except retry_on as exc:
            failures.append({"which": name, "error": str(exc)[:2000]})
            print(f"  warning: {name} sample failed (try {n} of {tries}): {str(exc)[:300]}", file=sys.stderr)
            if n == tries:
                raise exc if isinstance(exc, BenchError) else BenchError(str(exc)) from exc
    raise AssertionError("unreachable")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of the samples."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return ordered[int(rank) - 1]


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "min_ms": round(min(ms), 2),
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
    }


def summary_row(label: str, s: dict[str, float], width: int) -> str:
    """One line of a summary() table: min, median and p95 in ms."""
    return f"{label:{width}}  {s['min_ms']:9.1f} {s['median_ms']:9.1f} {s['p95_ms']:9.1f}"


def paired_difference(a: list[float], b: list[float], resamples: int = 2000, seed: int = 1) -> dict[str, float]:
    """Median of a[i] - b[i] (seconds in, ms out), with a 95% bootstrap interval for it.

    For samples taken side by side in the same rounds: machine drift between rounds cancels out, so
    this says more about a small difference than two medians taken apart do.
    """
    diffs = [(x - y) * 1000 for x, y in zip(a, b, strict=True)]
    rng = random.Random(seed)
    boot = sorted(statistics.median(rng.choices(diffs, k=len(diffs))) for _ in range(resamples))
    return {
        "n": len(diffs),
        "median_ms": round(statistics.median(diffs), 2),
        "ci95_low_ms": round(boot[int(resamples * 0.025)], 2),
        "ci95_high_ms": round(boot[int(resamples * 0.975) - 1], 2),
    }


def target_table(rows: list[tuple[str, str, str, str]]) -> str:
    """Rows of (label, measured, target, verdict) as a table: label left, measured right-aligned."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(3)]
    lines = [f"{'':{widths[0]}}  {'measured':>{widths[1]}}  target"]
    for label, measured, target, verdict in rows:
        lines.append(f"{label:{widths[0]}}  {measured:>{widths[1]}}  {target:{widths[2]}}  {verdict}".rstrip())
    return "\n".join(lines)


def write_result(path: Path, result: dict) -> None:
    """A benchmark's JSON result (bench/results/ is git-ignored), and say where it went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {path}")


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def git_describe() -> str:
    """The commit measured, with '+changes' when the work tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def machine_info(runsc_version: str, runsc_platform: str, **extra: str | int) -> dict[str, str | int]:
    """CPUs, OS, kernel, the python3 of the (a) rows, runsc, the load and the commit."""
    pretty = "unknown"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    try:
        debian = Path("/etc/debian_version").read_text().strip()
    except OSError:
        debian = ""
    return {
        "cpus": os.cpu_count() or 0,
        "os": pretty + (f" ({debian})" if debian else ""),
        "kernel": platform.release(),
        **extra,
        "python3_for_a": PYTHON3,
        "python3_version": subprocess.run([PYTHON3, "--version"], capture_output=True, text=True).stdout.strip(),
        "runsc": runsc_version,
        "runsc_platform": runsc_platform,
        "loadavg_at_start": loadavg(),
        "git": git_describe(),
    }


def add_stack_options(
    parser, *, result: str, redis_url: str, keep: str = "the temporary var dir (database, logs)"
) -> None:
    """The options of every benchmark that starts a Crucible stack of its own."""
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("CRUCIBLE_BENCH_REDIS_URL", redis_url),
        help=f"Redis for the stack; its database is flushed (default {redis_url})",
    )
    parser.add_argument(
        "--images-dir", type=Path, default=Path(os.environ.get("CRUCIBLE_IMAGES_DIR", REPO_ROOT / "var" / "images"))
    )
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / result)
    parser.add_argument("--keep", action="store_true", help=f"keep {keep}")
