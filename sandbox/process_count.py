"""Sampled process counts of a run, and what they can (and cannot) say about the process limit.

No engine sees a refused fork directly: under gVisor the only host-visible evidence is the guest's
task count, under rlimits the run's count in /proc. Reaching the limit is necessary for a refused
fork but not sufficient, and samples can miss a brief peak, so the verdict is `pids_limit` only
when the count reached the limit (a count of 1 is just the program itself) AND the run failed:
it exited non-zero, or it was still at the limit when the wall-time limit ended it.
"""

from __future__ import annotations


class ProcessSamples:
    """Task counts (processes plus threads, what RLIMIT_NPROC counts) over monotonic time."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.samples: list[tuple[float, int]] = []

    def add(self, when: float, count: int) -> None:
        self.samples.append((when, count))

    @property
    def latest(self) -> int | None:
        return self.samples[-1][1] if self.samples else None

    @property
    def peak(self) -> int | None:
        return max((n for _, n in self.samples), default=None)

    @property
    def near_limit(self) -> bool:
        """Worth sampling more often: a fork bomb may reach the limit and die out between samples."""
        latest = self.latest or 0
        return latest >= 2 and 2 * latest >= self.limit

    @property
    def limit_reached(self) -> bool:
        peak = self.peak
        return peak is not None and peak >= max(2, self.limit)

    def held_until(self, when: float) -> bool:
        """The limit was reached, and the last sample taken before `when` was still at it."""
        before = [n for t, n in self.samples if t < when]
        return self.limit_reached and bool(before) and before[-1] >= self.limit

    def detail(self) -> str:
        return f"process limit of {self.limit} reached (further processes and threads are refused)"
