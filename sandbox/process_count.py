"""Sampled process counts of a run, and what they can (and cannot) say about the process limit.

No engine sees a refused fork directly: under gVisor the only host-visible evidence is the guest's
task count, under rlimits the run's count in /proc. Reaching the limit is necessary for a refused
fork but not sufficient, and samples can miss a brief peak, so the verdict is `pids_limit` only
when the count reached the limit (a count of 1 is just the program itself) AND the run failed:
it exited non-zero, or it was still at the limit when the wall-time limit ended it.
"""

from __future__ import annotations

import json
import subprocess

from sandbox.pump import METRICS_EVERY


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


# The guest's process count is first read as soon as the sandbox exists, so even a print(1) gets a
# value (a query costs ~15 ms of CPU, the same whether it is sent at boot or 100 ms later, when a
# short run is exiting and it fails), then every METRICS_EVERY, or PROCESS_SAMPLE_FAST near the limit.
FIRST_PROCESS_SAMPLE = 0.0
PROCESS_SAMPLE_FAST = 0.1
PROCESS_SAMPLE_TIMEOUT = 2.0


class GuestProcesses:
    """The guest's task count (processes and threads), sampled with `runsc events --stats`.

    Under gVisor the host cgroup's pids.current counts the sentry's threads, not the user's
    processes; the sandbox's own pids counter is what RLIMIT_NPROC limits. One query costs ~30 ms
    wall and ~17 ms CPU, so it runs as a child process that later pump iterations collect: the
    output pump never waits for it.
    """

    def __init__(self, command: list[str], limit: int) -> None:
        self.command = command
        self.counts = ProcessSamples(limit)
        self.proc: subprocess.Popen[bytes] | None = None
        self.launched_at = 0.0
        self.next_at: float | None = None

    def booted(self, now: float) -> None:
        self.next_at = now + FIRST_PROCESS_SAMPLE

    def poll(self, now: float, *, launch: bool) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                if now - self.launched_at > PROCESS_SAMPLE_TIMEOUT:
                    self._abandon()
                return
            self._collect()
        if launch and self.next_at is not None and now >= self.next_at:
            self.launched_at = now
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                close_fds=True,
            )
            self.next_at = now + (PROCESS_SAMPLE_FAST if self.counts.near_limit else METRICS_EVERY)

    def finish(self) -> None:
        """Collect a query still in flight (the sandbox has exited: it answers or fails at once)."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=PROCESS_SAMPLE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._abandon()
            return
        self._collect()

    def _collect(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        out = self.proc.stdout.read()
        self.proc.stdout.close()
        ok = self.proc.returncode == 0
        self.proc = None
        if not ok:
            return  # not created yet, or already gone
        try:
            count = json.loads(out)["data"]["pids"]["current"]
        except (ValueError, KeyError, TypeError):
            return
        if isinstance(count, int):
            self.counts.add(self.launched_at, count)

    def _abandon(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
