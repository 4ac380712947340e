#!/usr/bin/env python3
"""Live output over the run websocket: print→receive latency, and a 1 GiB flood against the cap.

    .venv/bin/python bench/live.py            # see bench/README.md for how long it takes

A real daphne + Celery worker (tests/support/stack.py, set up as bench/e2e_latency.py does) and a
websocket client (the `websockets` package, `Authorization: Token` header) on /ws/runs/<id>/:

(a) latency  A script in the sandbox prints a line with its own time.time() every 10 ms for 10 s.
             The client notes time.time() when the message that completes each line arrives;
             latency = receive - print (gVisor's clock is the host's: checked, see below).
             Target: p50 <= 20 ms, p99 <= 100 ms.
(b) flood    A script writes 1 GiB to stdout with the default 1 MiB cap. Reported: the bytes the
             client received (must equal the cap), the time from the cap being reached in the log
             store (polled in the database every ms) to the client receiving the terminal status, and the
             Celery worker's peak RSS growth (VmRSS of the worker and its pool children from
             /proc, sampled every 5 ms, and their VmHWM after resetting it). Target: <= 50 MB.

Prints a table and PASS/FAIL per target (exit 0 either way; 1 if a measurement itself failed),
writes bench/results/live.json; --append-readme adds the table to bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"

if Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve() and VENV_PYTHON.exists():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])

# Ahead of bench/ (this script's directory, already on sys.path): bench/sandbox.py must not shadow `sandbox`.
sys.path.insert(0, str(REPO_ROOT))

import requests  # noqa: E402
from common import BenchError, add_stack_options, loadavg, machine_info, percentile, write_result  # noqa: E402
from e2e_latency import prepare_site  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from sandbox.contract import MiB, Status  # noqa: E402
from sandbox.engine import EngineConfig  # noqa: E402
from sandbox.runsc import RunscEngine  # noqa: E402
from tests.support.stack import Stack  # noqa: E402

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"  # its own: not make run's 0, e2e_latency's 13, the tests' 14
OUTPUT_CAP = MiB  # CRUCIBLE_OUTPUT_LIMIT_BYTES's default, which the stack keeps

TARGET_P50_MS = 20.0
TARGET_P99_MS = 100.0
TARGET_RSS_GROWTH_MB = 50.0

TICKER = """\
import time
period, end = {period}, time.time() + {seconds}
i, due = 0, time.time()
while True:
    now = time.time()
    if now >= end:
        break
    print(f"tick {{i}} {{now:.6f}}")
    i += 1
    due += period
    time.sleep(max(0.0, due - time.time()))
"""

FLOOD = """\
import sys
block = b"x" * (1024 * 1024)
out = sys.stdout.buffer
for _ in range({mib}):
    out.write(block)
out.flush()
"""

WARM_UP = "import sys\nsys.stdout.buffer.write(b'w' * (3 * 1024 * 1024))\n"


# -- talking to the stack ----------------------------------------------------------------------------


class Client:
    def __init__(self, stack: Stack, token: str) -> None:
        self.stack = stack
        self.token = token
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {token}"

    def submit(self, name: str, code: str, wall_seconds: float) -> int:
        resp = self.http.post(
            self.stack.url("/api/v1/submissions/"),
            json={"name": name, "code": code, "wall_seconds": wall_seconds},
            timeout=10,
        )
        if resp.status_code != 201:
            raise BenchError(f"POST /api/v1/submissions/: {resp.status_code} {resp.text[:500]}")
        return resp.json()["id"]

    def run(self, run_id: int) -> dict:
        resp = self.http.get(self.stack.url(f"/api/v1/runs/{run_id}/"), timeout=10)
        if resp.status_code != 200:
            raise BenchError(f"GET /api/v1/runs/{run_id}/: {resp.status_code} {resp.text[:300]}")
        return resp.json()

    def wait(self, run_id: int, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            data = self.run(run_id)
            if Status(data["status"]).is_terminal:
                return data
            if time.monotonic() > deadline:
                raise BenchError(f"run {run_id} still {data['status']} after {timeout:g}s\n{self.stack.logs()}")
            time.sleep(0.05)

    async def follow(self, run_id: int, on_output, timeout: float = 120.0) -> dict:
        """Open the run's websocket; call on_output(stream, offset, data, received_at) for each
        output message; return the terminal status message, with `received_at`, and `connected_at`."""
        uri = f"ws://{self.stack.host}:{self.stack.port}/ws/runs/{run_id}/"
        headers = {"Authorization": f"Token {self.token}"}
        async with connect(uri, additional_headers=headers, proxy=None, max_size=2 * MiB) as ws:
            connected_at = time.time()
            async with asyncio.timeout(timeout):
                async for frame in ws:
                    received_at = time.time()
                    message = json.loads(frame)
                    if message["type"] == "output":
                        on_output(message["stream"], message["offset"], base64.b64decode(message["data"]), received_at)
                    elif message["type"] == "status" and Status(message["status"]).is_terminal:
                        return {**message, "received_at": received_at, "connected_at": connected_at}
        raise BenchError(f"run {run_id}: the websocket closed before a terminal status")


def legs(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(statistics.median(values), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2),
    }


def parse_time(value: str | None) -> float | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


# -- (a) latency -------------------------------------------------------------------------------------


class StoredSize:
    """How many bytes of a run's stdout the log store holds: the end of its last OutputChunk row
    (evaluations/runs/logstore.py), read from the stack's SQLite database on a connection of its own."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._db: sqlite3.Connection | None = None

    def __call__(self, run_id: int | None) -> int:
        if run_id is None:
            return 0
        if self._db is None:  # opened in the thread that polls (sqlite3 connections stay in theirs)
            self._db = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=5)
        row = self._db.execute(
            'SELECT "offset" + size FROM evaluations_outputchunk WHERE run_id = ? AND stream = ? '
            'ORDER BY "offset" DESC LIMIT 1',
            (run_id, "stdout"),
        ).fetchone()
        return row[0] if row else 0


class SizeWatcher:
    """Notes (time, size) each time the stored stdout grows, polling every 0.5 ms in a thread:
    when each byte reached the store splits the latency into sandbox→store and store→client."""

    def __init__(self, size_of: Callable[[], int]) -> None:
        self.size_of = size_of
        self.changes: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SizeWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last = -1
        while not self._stop.is_set():
            try:
                size = self.size_of()
            except sqlite3.Error:
                size = 0
            if size != last:
                self.changes.append((time.time(), size))
                last = size
            time.sleep(0.0005)

    def reached(self, offset: int) -> float | None:
        """When the store first held `offset` bytes."""
        for t, size in self.changes:
            if size >= offset:
                return t
        return None


def measure_latency(client: Client, stored: StoredSize, seconds: float, period: float) -> dict:
    sizes = {"stdout": 0, "stderr": 0}
    partial = bytearray()  # stdout after its last newline
    lines: list[tuple[str, float]] = []  # (line, received_at of the message that completed it)
    frames: list[float] = []  # received_at of each stdout output message
    problems: list[str] = []

    def on_output(stream: str, offset: int, data: bytes, received_at: float) -> None:
        if offset != sizes[stream]:
            problems.append(f"{stream}: message at {offset}, expected {sizes[stream]}")
        sizes[stream] = offset + len(data)
        if stream == "stdout":
            frames.append(received_at)
            partial.extend(data)
            *complete, rest = partial.split(b"\n")
            lines.extend((line.decode(), received_at) for line in complete)
            partial[:] = rest

    code = TICKER.format(period=period, seconds=seconds)
    posted_at = time.time()
    run_id = client.submit("bench-live-ticker", code, wall_seconds=seconds + 20)
    with SizeWatcher(lambda: stored(run_id)) as store:
        final = asyncio.run(client.follow(run_id, on_output))
    run = client.wait(run_id)
    if run["status"] != "succeeded":
        raise BenchError(f"ticker run ended {run['status']}/{run['reason']}: {run['detail']} {run['stderr'][-500:]}")
    if problems:
        raise BenchError("output out of order: " + "; ".join(problems[:5]))

    printed, received, stored_at = [], [], []
    end = 0
    for line, received_at in lines:
        parts = line.split()
        if len(parts) != 3 or parts[0] != "tick":
            raise BenchError(f"unexpected line {line!r}")
        printed.append(float(parts[2]))
        received.append(received_at)
        end += len(line.encode()) + 1
        stored_at.append(store.reached(end))
    if not printed:
        raise BenchError("no lines arrived")
    # Lines printed before the socket was open came through the replay, not live: left out.
    live = [(p, r, st) for p, r, st in zip(printed, received, stored_at, strict=True) if p >= final["connected_at"]]
    latencies_ms = [(r - p) * 1000 for p, r, _ in live]
    to_store_ms = [(st - p) * 1000 for p, _, st in live if st is not None]
    store_to_client_ms = [(r - st) * 1000 for _, r, st in live if st is not None]
    started_at, finished_at = parse_time(run["started_at"]), parse_time(run["finished_at"])

    # Sanity checks of the shared clock: the sandbox's time.time() must sit inside the host's
    # timeline (after the POST and the claim, before the receipt and the finish), tick at the
    # host's rate, and never make a line arrive before it was printed.
    printed_span, received_span = printed[-1] - printed[0], received[-1] - received[0]
    # A sandbox clock running at another rate would move the lowest latency between the first
    # and the last quarter of the run (the lowest, because queueing delays only ever add).
    quarter = max(1, len(latencies_ms) // 4)
    floor_first, floor_last = min(latencies_ms[:quarter]), min(latencies_ms[-quarter:])
    checks = {
        "first print after the POST": printed[0] >= posted_at,
        "first print after started_at (host clock, worker)": started_at is not None and printed[0] >= started_at,
        "last print before finished_at (host clock, worker)": finished_at is not None and printed[-1] <= finished_at,
        "no line received before it was printed": min(latencies_ms) >= 0.0,
        "lowest latency of the first and the last quarter agree within 20 ms": abs(floor_first - floor_last) < 20,
        "print span within 5 % of the requested seconds": abs(printed_span - seconds) < 0.05 * seconds,
    }
    busiest_second = max(sum(1 for t in frames if start <= t < start + 1.0) for start in frames)
    return {
        "run_id": run_id,
        "frames": len(frames),
        "frames_busiest_second": busiest_second,
        "lines": len(printed),
        "lines_live": len(live),
        "lines_before_connect": len(printed) - len(live),
        "expected_lines": int(seconds / period),
        "latency_ms": {
            "min": round(min(latencies_ms), 2),
            "p50": round(statistics.median(latencies_ms), 2),
            "p90": round(percentile(latencies_ms, 90), 2),
            "p99": round(percentile(latencies_ms, 99), 2),
            "max": round(max(latencies_ms), 2),
            "mean": round(statistics.fmean(latencies_ms), 2),
        },
        # The same latency in two legs (the store polled every 0.5 ms): the sandbox's pipe,
        # runsc and the worker's pump; then the publisher's batching, Redis, daphne, the client.
        "print_to_store_ms": legs(to_store_ms),
        "store_to_client_ms": legs(store_to_client_ms),
        "clock": {
            "printed_span_s": round(printed_span, 4),
            "received_span_s": round(received_span, 4),
            "lowest_latency_first_quarter_ms": round(floor_first, 2),
            "lowest_latency_last_quarter_ms": round(floor_last, 2),
            "first_print_minus_started_at_ms": round((printed[0] - started_at) * 1000, 1) if started_at else None,
            "finished_at_minus_last_print_ms": round((finished_at - printed[-1]) * 1000, 1) if finished_at else None,
            "checks": checks,
        },
        "raw_latency_ms": [round(x, 3) for x in latencies_ms],
    }


# -- (b) flood ---------------------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """root and all its descendants (from /proc/<pid>/stat's ppid)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def worker_pids(worker_root: int) -> list[int]:
    """The Celery worker and its pool children: the Python processes of the tree, not the sandboxes
    they start (runsc and its sentry belong to the run, under the run's own memory limit)."""
    return [pid for pid in process_tree(worker_root) if "celery" in cmdline(pid)]


class RssSampler:
    """Samples the summed VmRSS of the worker processes every `interval` seconds in a thread."""

    def __init__(self, worker_root: int, interval: float = 0.005) -> None:
        self.pids = worker_pids(worker_root)
        self.interval = interval
        self.baseline = {pid: status_kib(pid, "VmRSS") or 0 for pid in self.pids}
        for pid in self.pids:  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                pass
        self.peak_total = sum(self.baseline.values())
        self.peak_each = dict(self.baseline)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            total = 0
            for pid in self.pids:
                rss = status_kib(pid, "VmRSS") or 0
                total += rss
                self.peak_each[pid] = max(self.peak_each[pid], rss)
            self.peak_total = max(self.peak_total, total)
            self.samples += 1

    def report(self) -> dict:
        hwm = {pid: status_kib(pid, "VmHWM") for pid in self.pids}
        growth_each = {pid: self.peak_each[pid] - self.baseline[pid] for pid in self.pids}
        hwm_growth = {pid: (hwm[pid] or 0) - self.baseline[pid] for pid in self.pids}
        return {
            "pids": {str(pid): cmdline(pid)[:120] for pid in self.pids},
            "baseline_kib": {str(p): v for p, v in self.baseline.items()},
            "samples": self.samples,
            "sampled_peak_growth_total_mb": round((self.peak_total - sum(self.baseline.values())) / 1024, 2),
            "sampled_peak_growth_max_process_mb": round(max(growth_each.values()) / 1024, 2),
            "vmhwm_growth_max_process_mb": round(max(hwm_growth.values()) / 1024, 2),
            "vmhwm_growth_total_mb": round(sum(hwm_growth.values()) / 1024, 2),
        }


def wait_for_size(size_of: Callable[[], int], size: int, found: dict, stop: threading.Event) -> None:
    """Poll the log store every ms; note when the run's stdout first holds `size` bytes."""
    while not stop.is_set():
        try:
            if size_of() >= size:
                found["at"] = time.time()
                return
        except sqlite3.Error:
            pass
        time.sleep(0.001)


def measure_flood(client: Client, stack: Stack, stored: StoredSize, flood_mib: int) -> dict:
    if stack.worker is None:
        raise BenchError("the stack has no worker")
    received = {"stdout": 0, "stderr": 0}
    problems: list[str] = []
    cap_received_at: dict[str, float] = {}

    def on_output(stream: str, offset: int, data: bytes, received_at: float) -> None:
        if offset != received[stream]:
            problems.append(f"{stream}: message at {offset}, expected {received[stream]}")
        received[stream] = offset + len(data)
        if stream == "stdout" and received[stream] >= OUTPUT_CAP and "at" not in cap_received_at:
            cap_received_at["at"] = received_at

    run_holder: dict[str, int] = {}
    stored_cap: dict[str, float] = {}
    stop = threading.Event()

    poller = threading.Thread(
        target=wait_for_size, args=(lambda: stored(run_holder.get("id")), OUTPUT_CAP, stored_cap, stop), daemon=True
    )
    with RssSampler(stack.worker.pid) as rss:
        poller.start()
        posted_at = time.time()
        run_holder["id"] = run_id = client.submit("bench-live-flood", FLOOD.format(mib=flood_mib), wall_seconds=60)
        try:
            final = asyncio.run(client.follow(run_id, on_output))
        finally:
            stop.set()
            poller.join()
        time.sleep(0.5)  # the worker's clean-up after the status is part of the run too
    run = client.wait(run_id)
    if problems:
        raise BenchError("output out of order: " + "; ".join(problems[:5]))
    finished_at = parse_time(run["finished_at"])
    cap_at = stored_cap.get("at")
    return {
        "run_id": run_id,
        "flood_bytes": flood_mib * MiB,
        "cap_bytes": OUTPUT_CAP,
        "status": f"{run['status']}/{run['reason']}",
        "detail": run["detail"],
        "stdout_bytes_received": received["stdout"],
        "stderr_bytes_received": received["stderr"],
        "stdout_bytes_in_final_status": run["stdout_bytes"],
        "stdout_truncated": run["stdout_truncated"],
        "run_seconds": run["run_seconds"],
        "post_to_cap_stored_s": round(cap_at - posted_at, 3) if cap_at else None,
        "cap_stored_to_status_received_ms": round((final["received_at"] - cap_at) * 1000, 1) if cap_at else None,
        "cap_stored_to_finished_at_ms": round((finished_at - cap_at) * 1000, 1) if cap_at and finished_at else None,
        "cap_received_to_status_received_ms": (
            round((final["received_at"] - cap_received_at["at"]) * 1000, 1) if cap_received_at else None
        ),
        "worker_rss": rss.report(),
    }


# -- report ------------------------------------------------------------------------------------------


def table(result: dict) -> str:
    lat, flood = result["latency"], result["flood"]
    ms = lat["latency_ms"]
    rss = flood["worker_rss"]
    t = result["targets"]

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    rows = [
        ("(a) print → receive, p50", f"{ms['p50']:.1f} ms", f"≤ {TARGET_P50_MS:g} ms", verdict(t["p50"]["passed"])),
        ("(a) print → receive, p99", f"{ms['p99']:.1f} ms", f"≤ {TARGET_P99_MS:g} ms", verdict(t["p99"]["passed"])),
        ("(a) print → receive, min / p90 / max", f"{ms['min']:.1f} / {ms['p90']:.1f} / {ms['max']:.1f} ms", "", ""),
        (
            "(a)   print → log store, p50 / p99",
            f"{lat['print_to_store_ms']['p50']} / {lat['print_to_store_ms']['p99']} ms",
            "",
            "",
        ),
        (
            "(a)   log store → client, p50 / p99",
            f"{lat['store_to_client_ms']['p50']} / {lat['store_to_client_ms']['p99']} ms",
            "",
            "",
        ),
        (
            "(a) stdout frames received: all / busiest second",
            f"{lat['frames']} / {lat['frames_busiest_second']}",
            "",
            "",
        ),
        (
            "(a) lines received live / printed",
            f"{lat['lines_live']} / {lat['lines']} (of ~{lat['expected_lines']})",
            "",
            "",
        ),
        (
            "(a) clock checks (sandbox vs host)",
            f"{sum(lat['clock']['checks'].values())} of {len(lat['clock']['checks'])} hold",
            "all",
            verdict(t["clock"]["passed"]),
        ),
        (
            "(b) stdout bytes received by the client",
            f"{flood['stdout_bytes_received']:,}",
            f"= cap {flood['cap_bytes']:,}",
            verdict(t["received_is_cap"]["passed"]),
        ),
        ("(b) run status", flood["status"], "", ""),
        ("(b) cap reached in store → client has status", f"{flood['cap_stored_to_status_received_ms']} ms", "", ""),
        ("(b) cap reached in store → finished_at", f"{flood['cap_stored_to_finished_at_ms']} ms", "", ""),
        ("(b) client has the cap → client has status", f"{flood['cap_received_to_status_received_ms']} ms", "", ""),
        (
            "(b) worker peak RSS growth (VmHWM, one process)",
            f"{rss['vmhwm_growth_max_process_mb']:.1f} MB",
            f"≤ {TARGET_RSS_GROWTH_MB:g} MB",
            verdict(t["rss"]["passed"]),
        ),
        (
            "(b) worker RSS growth, sampled (all processes)",
            f"{rss['sampled_peak_growth_total_mb']:.1f} MB",
            f"≤ {TARGET_RSS_GROWTH_MB:g} MB",
            "",
        ),
    ]
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    lines = [f"{'':{widths[0]}}  {'measured':>{widths[1]}}  target"]
    for r in rows:
        lines.append(f"{r[0]:{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:{widths[2]}}  {r[3]}".rstrip())
    return "\n".join(lines)


def append_readme(result: dict, text: str) -> Path:
    readme = REPO_ROOT / "bench" / "README.md"
    m = result["machine"]
    block = (
        f"\n{result['date']}, commit {m['git']}, {m['cpus']} vCPUs, {m['os']}, kernel {m['kernel']}, "
        f"`{m['runsc']}` ({m['runsc_platform']}), load average {m['loadavg_at_start']} at the start, "
        f"{m['loadavg_at_end']} at the end:\n\n```\n{text}\n```\n"
    )
    with open(readme, "a") as f:
        f.write(block)
    return readme


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="(a): how long the script prints (default 10)")
    parser.add_argument("--period-ms", type=float, default=10.0, help="(a): print interval (default 10 ms)")
    parser.add_argument("--flood-mib", type=int, default=1024, help="(b): MiB the script writes (default 1024)")
    parser.add_argument("--append-readme", action="store_true", help="append the table to bench/README.md")
    add_stack_options(parser, result="live.json", redis_url=DEFAULT_REDIS_URL)
    args = parser.parse_args()

    import redis

    if os.geteuid() != 0:
        print("bench: runsc and the Crucible worker need root", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="clive-"))  # short: runsc's socket paths must stay < 108 bytes
    var_dir = work / "var"
    var_dir.mkdir()
    state_dir = var_dir / "sandboxes"
    state_dir.mkdir()
    started = dt.datetime.now(dt.UTC)
    try:
        engine = RunscEngine(EngineConfig(images_dir=args.images_dir, state_dir=state_dir))
        info = machine_info(engine.runtime_version(), engine.platform())
        print(
            f"machine: {info['cpus']} CPUs, {info['os']}, kernel {info['kernel']}, {info['runsc']} "
            f"({info['runsc_platform']}), load {info['loadavg_at_start']}",
            flush=True,
        )
        redis.Redis.from_url(args.redis_url, socket_connect_timeout=2).flushdb()
        env, token = prepare_site(var_dir, args.images_dir, state_dir, args.redis_url)
        # One pool process: the warm-up runs warm the very process that then takes the flood.
        with Stack(env, log_dir=work / "stack-logs", concurrency=1) as stack:
            print(f"stack up at {stack.base_url} (logs: {stack.log_dir})", flush=True)
            client = Client(stack, token)
            for code in ("print('warm')\n", WARM_UP):  # imports, first sandbox, the cap path
                client.wait(client.submit("bench-live-warm-up", code, wall_seconds=30))
            print(f"(a) {args.seconds:g} s of lines every {args.period_ms:g} ms ...", flush=True)
            latency = measure_latency(
                client, StoredSize(var_dir / "crucible.sqlite3"), args.seconds, args.period_ms / 1000
            )
            print(f"(b) {args.flood_mib} MiB to stdout against a {OUTPUT_CAP // MiB} MiB cap ...", flush=True)
            flood = measure_flood(client, stack, StoredSize(var_dir / "crucible.sqlite3"), args.flood_mib)
    except BenchError as exc:
        print(f"bench: measurement failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    info["loadavg_at_end"] = loadavg()
    ms = latency["latency_ms"]
    targets = {
        "p50": {"max_ms": TARGET_P50_MS, "passed": ms["p50"] <= TARGET_P50_MS},
        "p99": {"max_ms": TARGET_P99_MS, "passed": ms["p99"] <= TARGET_P99_MS},
        "clock": {"passed": all(latency["clock"]["checks"].values())},
        "received_is_cap": {"bytes": OUTPUT_CAP, "passed": flood["stdout_bytes_received"] == OUTPUT_CAP},
        "rss": {
            "max_mb": TARGET_RSS_GROWTH_MB,
            "passed": flood["worker_rss"]["vmhwm_growth_max_process_mb"] <= TARGET_RSS_GROWTH_MB
            and flood["worker_rss"]["sampled_peak_growth_total_mb"] <= TARGET_RSS_GROWTH_MB,
        },
    }
    result = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info,
        "database": "sqlite (fresh, WAL)",
        "worker_concurrency": 1,
        "latency": latency,
        "flood": flood,
        "targets": targets,
    }
    text = table(result)
    print()
    print(text)
    print()
    for name, check in latency["clock"]["checks"].items():
        print(f"  clock check: {name}: {'ok' if check else 'FAILED'}")
    overall = all(t["passed"] for t in targets.values())
    print(f"overall: {'PASS' if overall else 'FAIL'}")
    write_result(args.json, result)
    if args.append_readme:
        print(f"appended to {append_readme(result, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
