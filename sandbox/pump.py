"""The output pump every engine shares: stdout/stderr in chunks, caps, wall deadline, cancel, metrics.

An engine hands its process's pipes and a few callables to an `OutputPump` and calls `run()`; the
rules it enforces are in docs/sandbox.md, "The output pump". All callbacks run on the calling thread.
"""

from __future__ import annotations

import os
import selectors
import threading
import time
from collections.abc import Callable

from sandbox.contract import OutputCallback, Reason, Stream, StreamResult
from sandbox.engine import MetricSample, MetricsCallback

READ_CHUNK = 64 * 1024
POLL_SECONDS = 0.05
METRICS_EVERY = 0.5
KILL_GRACE_SECONDS = 0.5
DRAIN_SECONDS = 1.0
CLOSED_PIPES_FIRST_WAIT = 0.001


class OutputPump:
    """Drives one process to its end; what it guarantees is in docs/sandbox.md, "The output pump".

    Arguments:
        stdout, stderr: read ends of the process's pipes (file descriptors). The pump makes them
            non-blocking but does not close them.
        exited: returns True once the process has exited (e.g. `lambda: proc.poll() is not None`).
        kill: asks the engine to stop the process; called at most once, must not block for long.
        wall_seconds, stdout_cap, stderr_cap: the request's limits.
        on_output, on_metrics, cancel: as passed to `ExecutionEngine.execute`.
        sample: returns the current MetricSample given the seconds since `started`; called every
            METRICS_EVERY while the process runs, only when `on_metrics` is set.
        force_kill: a harder stop if `kill` did not work within KILL_GRACE_SECONDS.
        tick: called with time.monotonic() on every iteration (at most POLL_SECONDS apart) while
            the process runs, for engine bookkeeping that must not block (boot detection, ...).
        started: the monotonic time the process was started; the wall deadline counts from it.
    """

    def __init__(
        self,
        *,
        stdout: int,
        stderr: int,
        exited: Callable[[], bool],
        kill: Callable[[], None],
        wall_seconds: float,
        stdout_cap: int,
        stderr_cap: int,
        on_output: OutputCallback | None = None,
        on_metrics: MetricsCallback | None = None,
        sample: Callable[[float], MetricSample] | None = None,
        cancel: threading.Event | None = None,
        force_kill: Callable[[], None] | None = None,
        tick: Callable[[float], None] | None = None,
        started: float | None = None,
    ) -> None:
        self.fds = {Stream.STDOUT: stdout, Stream.STDERR: stderr}
        self.exited, self._kill_fn, self.force_kill, self.tick = exited, kill, force_kill, tick
        self.on_output, self.on_metrics, self.sample, self.cancel = on_output, on_metrics, sample, cancel
        self.started = time.monotonic() if started is None else started
        self.deadline = self.started + wall_seconds
        self.caps = {Stream.STDOUT: stdout_cap, Stream.STDERR: stderr_cap}
        self.kept = {Stream.STDOUT: bytearray(), Stream.STDERR: bytearray()}
        self.written = {Stream.STDOUT: 0, Stream.STDERR: 0}
        # Why and when the pump (or the engine, through kill()) stopped the process.
        self.kill_reason: Reason | None = None
        # The longest wait for output before `tick` and the checks run again; an engine may lower
        # it for a while (e.g. to notice the sandbox booting sooner).
        self.poll_seconds = POLL_SECONDS
        self.killed_at: float | None = None
        self.exited_at: float | None = None

    def run(self) -> None:
        """Pump until the process has exited and its pipes are drained (or DRAIN_SECONDS passed)."""
        sel = selectors.DefaultSelector()
        for stream, fd in self.fds.items():
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ, stream)
        next_metrics = self.started + METRICS_EVERY
        closed_wait = CLOSED_PIPES_FIRST_WAIT
        try:
            while True:
                now = time.monotonic()
                if self.exited_at is None and self.exited():
                    self.exited_at = now
                # The run ends when the process exits, not at EOF: drain what is buffered, briefly.
                if self.exited_at is not None and (not sel.get_map() or now - self.exited_at > DRAIN_SECONDS):
                    return
                timeout = self.poll_seconds if self.exited_at is None else 0.01
                if sel.get_map():
                    events = sel.select(timeout=timeout)
                else:
                    # Both pipes are closed but the process has not exited. Usually it is exiting
                    # this very moment (its pipes close before its exit can be reaped), so look
                    # again soon (a flat `timeout` here made every run slower, see bench/README.md);
                    # if it lives on (it closed its own stdout), back off to `timeout` instead of
                    # spinning on exited().
                    time.sleep(min(timeout, closed_wait))
                    closed_wait *= 2
                    events = []
                if not events and self.exited_at is not None:
                    return
                for key, _ in events:
                    try:
                        chunk = os.read(key.fd, READ_CHUNK)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(key.fd)
                        continue
                    self._take(key.data, chunk)
                if self.exited_at is not None:
                    continue
                now = time.monotonic()
                if self.tick is not None:
                    self.tick(now)
                if self.cancel is not None and self.cancel.is_set():
                    self.kill(Reason.CANCELLED)
                elif now >= self.deadline:
                    self.kill(Reason.TIMEOUT)
                if (
                    self.killed_at is not None
                    and self.force_kill is not None
                    and now - self.killed_at > KILL_GRACE_SECONDS
                ):
                    self.force_kill()  # kill() did not end it (e.g. the sandbox was not created yet)
                if self.on_metrics is not None and self.sample is not None and now >= next_metrics:
                    next_metrics = now + METRICS_EVERY
                    self.on_metrics(self.sample(now - self.started))
        finally:
            sel.close()

    def kill(self, reason: Reason | None) -> None:
        """Stop the process (once) and remember why; `None` means "no verdict", e.g. on an error."""
        if self.killed_at is not None:
            return
        self.kill_reason = reason
        self.killed_at = time.monotonic()
        self._kill_fn()

    def _take(self, stream: Stream, chunk: bytes) -> None:
        offset = self.written[stream]
        self.written[stream] += len(chunk)
        room = self.caps[stream] - len(self.kept[stream])
        part = chunk[: max(0, room)]
        if part:
            self.kept[stream] += part
            if self.on_output is not None:
                self.on_output(stream, offset, part)
        if len(chunk) > room:
            # At the cap: stop the process, but keep draining so it cannot block on a full pipe.
            self.kill(Reason.OUTPUT_LIMIT)

    def over_cap(self) -> list[Stream]:
        return [s for s in Stream if self.written[s] > self.caps[s]]

    def stream_result(self, stream: Stream) -> StreamResult:
        return StreamResult(
            data=bytes(self.kept[stream]),
            bytes_written=self.written[stream],
            truncated=self.written[stream] > self.caps[stream],
        )
