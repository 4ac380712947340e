"""The shared OutputPump, driven by plain host processes: chunks, caps, deadline, cancel, metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from sandbox.contract import Reason, Stream
from sandbox.engine import MetricSample
from sandbox.pump import KILL_GRACE_SECONDS, OutputPump

pytestmark = pytest.mark.timeout(30)


class Harness:
    """A python3 child with its pipes handed to a pump; records every callback."""

    def __init__(self, code: str, *, kill_works: bool = True, **pump_kwargs: Any) -> None:
        self.kill_works = kill_works
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.chunks: list[tuple[Stream, int, bytes, float]] = []
        self.kills = 0
        self.force_kills = 0
        assert self.proc.stdout is not None and self.proc.stderr is not None
        defaults: dict[str, Any] = dict(wall_seconds=10, stdout_cap=1 << 20, stderr_cap=1 << 20)
        self.pump = OutputPump(
            stdout=self.proc.stdout.fileno(),
            stderr=self.proc.stderr.fileno(),
            exited=lambda: self.proc.poll() is not None,
            kill=self.kill,
            force_kill=self.force_kill,
            on_output=lambda s, o, c: self.chunks.append((s, o, c, time.time())),
            **{**defaults, **pump_kwargs},
        )

    def kill(self) -> None:
        self.kills += 1
        if self.kill_works:
            os.killpg(self.proc.pid, signal.SIGKILL)

    def force_kill(self) -> None:
        self.force_kills += 1
        os.killpg(self.proc.pid, signal.SIGKILL)

    def run(self) -> float:
        started = time.monotonic()
        try:
            self.pump.run()
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            for f in (self.proc.stdout, self.proc.stderr):
                assert f is not None
                f.close()
        return time.monotonic() - started

    def data(self, stream: Stream) -> bytes:
        return b"".join(c for s, _, c, _ in self.chunks if s is stream)


def test_it_delivers_both_streams_in_chunks_with_offsets() -> None:
    h = Harness("import sys\nsys.stdout.write('a' * 200_000)\nsys.stderr.write('err')\nsys.stdout.write('b')")
    h.run()
    assert h.data(Stream.STDOUT) == b"a" * 200_000 + b"b"
    assert h.data(Stream.STDERR) == b"err"
    expected = {Stream.STDOUT: 0, Stream.STDERR: 0}
    for stream, offset, chunk, _ in h.chunks:
        assert offset == expected[stream] and 0 < len(chunk) <= 64 * 1024
        expected[stream] += len(chunk)
    assert h.pump.kill_reason is None and h.kills == 0
    assert h.pump.stream_result(Stream.STDOUT).bytes_written == 200_001


def test_at_the_cap_it_keeps_exactly_the_cap_and_stops_the_process() -> None:
    h = Harness("import sys\nwhile True: sys.stdout.write('x' * 10_000)", stdout_cap=100_000)
    assert h.run() < 5
    result = h.pump.stream_result(Stream.STDOUT)
    assert result.data == b"x" * 100_000 and result.truncated
    assert result.bytes_written > 100_000
    assert h.data(Stream.STDOUT) == result.data
    assert (h.pump.kill_reason, h.kills) == (Reason.OUTPUT_LIMIT, 1)
    assert h.pump.over_cap() == [Stream.STDOUT]


def test_a_giant_line_without_newline_is_never_buffered_whole() -> None:
    h = Harness("import sys\nsys.stdout.write('y' * 5_000_000)", stdout_cap=5_000_000)
    h.run()
    assert h.data(Stream.STDOUT) == b"y" * 5_000_000
    assert max(len(c) for _, _, c, _ in h.chunks) <= 64 * 1024


def test_the_run_ends_when_the_process_exits_even_if_a_daemon_holds_the_pipe() -> None:
    code = "import os, time\nif os.fork() == 0:\n    time.sleep(20)\n    os._exit(0)\nprint('parent done')"
    h = Harness(code)
    assert h.run() < 2
    assert h.data(Stream.STDOUT) == b"parent done\n"
    assert h.pump.exited_at is not None and h.kills == 0


def test_an_exit_seen_just_after_the_pipes_close_ends_the_run_at_once() -> None:
    # A process's pipes close a moment before its exit can be reaped; the pump must not then sit
    # out a whole poll interval (runsc run showed it: ~8 ms a run at the median).
    h = Harness("print('bye')")
    visible_at: list[float] = []

    def exited() -> bool:
        if h.proc.poll() is None:
            return False
        if not visible_at:
            visible_at.append(time.monotonic() + 0.003)  # reaped 3 ms after the pipes closed
        return time.monotonic() >= visible_at[0]

    h.pump.exited = exited
    h.run()
    returned = time.monotonic()
    assert h.data(Stream.STDOUT) == b"bye\n"
    assert returned - visible_at[0] < 0.025, f"the pump noticed the exit {returned - visible_at[0]:.3f} s late"


def test_a_process_that_closes_its_pipes_and_lives_on_is_not_polled_in_a_spin() -> None:
    h = Harness("import os, time\nos.close(1)\nos.close(2)\ntime.sleep(1)")
    calls = 0
    exited = h.pump.exited

    def counting() -> bool:
        nonlocal calls
        calls += 1
        return exited()

    h.pump.exited = counting
    assert h.run() < 2
    assert calls < 60, calls  # about one per POLL_SECONDS once it has backed off


def test_the_wall_deadline_stops_it_and_a_stuck_kill_is_escalated() -> None:
    h = Harness("import time; time.sleep(30)", wall_seconds=0.3, kill_works=False)
    took = h.run()
    assert h.pump.kill_reason is Reason.TIMEOUT
    assert h.kills == 1 and h.force_kills >= 1
    assert 0.3 + KILL_GRACE_SECONDS <= took < 0.3 + KILL_GRACE_SECONDS + 1


def test_cancel_stops_it_within_one_poll() -> None:
    cancel = threading.Event()
    h = Harness("import time; time.sleep(30)", cancel=cancel)
    threading.Timer(0.2, cancel.set).start()
    assert h.run() < 0.6
    assert (h.pump.kill_reason, h.kills) == (Reason.CANCELLED, 1)


def test_metrics_are_sampled_every_half_second_and_tick_runs_often() -> None:
    samples: list[MetricSample] = []
    ticks: list[float] = []
    h = Harness(
        "import time; time.sleep(1.3)",
        on_metrics=samples.append,
        sample=lambda elapsed: MetricSample(elapsed, 1.0, 2, 3),
        tick=ticks.append,
    )
    h.run()
    assert [round(s.elapsed_seconds * 2) / 2 for s in samples] == [0.5, 1.0]
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert len(ticks) >= 20 and max(gaps) < 0.1, gaps


def test_output_reaches_the_callback_within_50_ms_of_the_write() -> None:
    code = "import time\nfor _ in range(30):\n    print(repr(time.time()))\n    time.sleep(0.02)"
    h = Harness(code, on_metrics=lambda s: None, sample=lambda e: MetricSample(e, None, None, None))
    h.run()
    latencies = sorted(seen - float(stamp) for _, _, chunk, seen in h.chunks for stamp in chunk.split())
    assert len(latencies) == 30
    assert latencies[-1] < 0.05, latencies
