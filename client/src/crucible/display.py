"""What `crucible` shows a person on stderr: messages, colours and the live status line, the last
two only on a terminal (and never with NO_COLOR for colours). The program's own output goes
through `write_output`, which keeps the status line from landing inside it."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import BinaryIO, TextIO

GREEN, RED, YELLOW, DIM, BOLD = "32", "31", "33", "2", "1"
STATUS_COLOURS = {
    "queued": YELLOW,
    "running": YELLOW,
    "succeeded": GREEN,
    "failed": RED,
    "cancelled": YELLOW,
    "error": RED,
}


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


class Display:
    def __init__(
        self,
        *,
        out: BinaryIO | None = None,
        err: TextIO | None = None,
        err_bytes: BinaryIO | None = None,
        colour: bool | None = None,
        status_line: bool | None = None,
    ) -> None:
        self.err = err or sys.stderr
        self.out_bytes = out or sys.stdout.buffer
        self.err_bytes = err_bytes or sys.stderr.buffer
        err_tty = _isatty(self.err)
        self.colour = (err_tty and not os.environ.get("NO_COLOR")) if colour is None else colour
        self.live = err_tty if status_line is None else status_line
        self._tty = {"stdout": _isatty(self.out_bytes), "stderr": err_tty}
        self._lock = threading.RLock()
        self._at_line_start = True  # of what was last written to the terminal
        self._stderr_at_line_start = True  # our lines start on a line of their own
        self._status_text: Callable[[], str] | None = None
        self._drawn = False
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    # -- messages ------------------------------------------------------------------------------------

    def paint(self, text: str, *codes: str) -> str:
        return f"\033[{';'.join(codes)}m{text}\033[0m" if self.colour and codes else text

    def message(self, text: str, *codes: str) -> None:
        """A line of ours on stderr (prefixed, so it stands apart from the program's own stderr)."""
        with self._lock:
            self._clear()
            if not (self._at_line_start if self._tty["stderr"] else self._stderr_at_line_start):
                self.err.write("\n")
            self.err.write(self.paint("crucible: ", DIM) + self.paint(text, *codes) + "\n")
            self.err.flush()
            self._at_line_start = self._stderr_at_line_start = True
            self._draw()

    def error(self, text: str) -> None:
        self.message(text, RED)

    # -- the program's output ------------------------------------------------------------------------

    def write_output(self, stream: str, data: bytes) -> None:
        target = self.out_bytes if stream == "stdout" else self.err_bytes
        with self._lock:
            self._clear()
            if stream == "stdout":
                self.err.flush()
            target.write(data)
            target.flush()
            if self._tty[stream] and data:
                self._at_line_start = data.endswith(b"\n")
            if stream == "stderr" and data:
                self._stderr_at_line_start = data.endswith(b"\n")
            self._draw()

    # -- the status line -----------------------------------------------------------------------------

    def start_status(self, text: Callable[[], str], every: float = 0.5) -> None:
        """Keep a status line (`text()`, redrawn every `every` s) at the bottom of the terminal."""
        if not self.live:
            return
        self._status_text = text
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, args=(every,), daemon=True, name="crucible-status")
        self._ticker.start()

    def stop_status(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
            self._ticker = None
        with self._lock:
            self._clear()
            self._status_text = None

    def refresh(self) -> None:
        with self._lock:
            self._clear()
            self._draw()

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            self.refresh()

    def _draw(self) -> None:
        # Only at the start of a line: drawn after half a line of output, it would split that line.
        if self._status_text is None or not self._at_line_start:
            return
        width = shutil.get_terminal_size((80, 24)).columns
        text = self._status_text()[: max(10, width - 1)]
        self.err.write("\r" + self.paint(text, DIM) + "\033[K")
        self.err.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.err.write("\r\033[K")
            self.err.flush()
            self._drawn = False


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def human_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    minutes, seconds = divmod(int(s), 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class Clock:
    """Elapsed time on the server's clock: `server_time` minus a start, plus what passed here since."""

    def __init__(self) -> None:
        self.offset: float | None = None
        self.received = time.monotonic()

    def set(self, elapsed_at_server: float | None) -> None:
        self.offset, self.received = elapsed_at_server, time.monotonic()

    def elapsed(self) -> float | None:
        return None if self.offset is None else max(0.0, self.offset + time.monotonic() - self.received)
