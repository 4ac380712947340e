#!/usr/bin/env python3
"""Load: users submit short runs over the REST API while websocket clients follow runs.

    .venv/bin/python bench/load.py              # 1,000 runs, 20 users, 50 followers; bench/README.md
    .venv/bin/python bench/load.py -n 40 --raw-seconds 5    # a smoke run

It starts its own stack (tests/support/stack.py: daphne + a Celery worker, --concurrency 2 by
default, and `manage.py reconcile` when that command exists) on a temporary CRUCIBLE_VAR_DIR, a
fresh database (PostgreSQL by default: a new database, migrated, dropped at the end; --sqlite for
a SQLite file) and a Redis database of its own (11, flushed first). Then:

1. Raw baseline, before: `runsc run` of the same bundle and flags as the engine
   (bench/raw_runsc.py), back to back from as many threads as the worker has pool processes, for
   --raw-seconds; then the same with `runsc delete --force` after each run.
2. Load: --users users (researchers, each with its own API token and a concurrent-run quota from
   --quotas, and daily quotas that allow all the runs) submit -n runs in all (`print('load <tag>')`)
   with `POST /api/v1/submissions/`. Each keeps submitting until it gets a 429 for its
   concurrent-run quota, then waits until its run-list websocket (`/ws/runs/`) reports one of its
   runs ended (at most --retry-seconds) and submits again. --followers websocket clients follow
   runs on `/ws/runs/<id>/` (the live protocol of docs/live-runs.md) one after another, each run
   from when it was created, and check each byte arrives once, in order, and the output is right.
   A separate process reads the API at --read-rate (`GET /api/v1/runs/` of a user, then
   `GET /api/v1/runs/<id>/` of one of the runs it listed) and times each request. Meanwhile the
   database is sampled every --sample-ms (queued + running runs per user, against their quota) and
   the web and worker process trees' RSS every 250 ms.
3. Raw baseline, after: the same two windows in the opposite order (drift cancels out).
4. Checks, from the database and the logs: every run terminal, none run twice (the engine's
   "sandbox crucible-runsc-<hex> started" lines in the worker log when it writes them, Celery task
   ids received twice, the runs' `deliveries`), the output of each, no 5xx (client side and in
   daphne's access log), errors and tracebacks in the logs.

Targets: Crucible's runs per minute >= 0.9 x raw `runsc run` at the same concurrency (the mean of
the before and after windows); API read p99 <= 50 ms (run detail and run list each); plus the
checks above. Prints a table and PASS/FAIL (exit 0 either way; 1 only if the benchmark itself
broke), writes bench/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import dataclasses
import datetime as dt
import functools
import itertools
import json
import multiprocessing
import os
import random
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"

# Re-run under the project's venv when started with another interpreter (it has requests, websockets).
if Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve() and VENV_PYTHON.exists():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])

# Ahead of bench/ (this script's directory, already on sys.path): bench/sandbox.py must not shadow `sandbox`.
sys.path.insert(0, str(REPO_ROOT))

import requests  # noqa: E402
from common import BenchError, add_stack_options, loadavg, machine_info, percentile, target_table  # noqa: E402
from raw_runsc import RawRunsc  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException  # noqa: E402

from sandbox.contract import MiB, Status  # noqa: E402
from sandbox.engine import EngineConfig  # noqa: E402
from sandbox.runsc import RunscEngine  # noqa: E402
from tests.support.stack import Stack  # noqa: E402

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"  # its own: not make run's 0, live's 12, e2e's 13, the tests' 14
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"  # where the fresh database is created
RECONCILE_COMMAND = REPO_ROOT / "evaluations" / "management" / "commands" / "reconcile.py"

TARGET_THROUGHPUT_RATIO = 0.9
TARGET_READ_P99_MS = 50.0

ACTIVE = ("queued", "running")
TERMINAL = tuple(s.value for s in Status if s.is_terminal)
RAW_CODE, RAW_EXPECTED = "print('load 00-0000')\n", b"load 00-0000\n"  # the same length as the runs'


def run_code(tag: str) -> str:
    return f"print('load {tag}')\n"


def run_stdout(tag: str) -> bytes:
    return f"load {tag}\n".encode()


def epoch(value: Any) -> float | None:
    """A timestamp column as seconds since the epoch (SQLite gives naive UTC text, psycopg datetimes)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def pcts(values: list[float], scale: float = 1000.0) -> dict[str, float | int | None]:
    """n, p50, p99 and max (ms by default) of seconds."""
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50) * scale, 1),
        "p99": round(percentile(values, 99) * scale, 1),
        "max": round(max(values) * scale, 1),
    }


# -- the site: database, environment, users -----------------------------------------------------------


class Database:
    """The bench's own connection to the site's database (read-only use: sampling and checks)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            self.conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30, check_same_thread=False)
        else:
            import psycopg

            self.conn = psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True)
        self.postgres = not url.startswith("sqlite:///")
        self.lock = threading.Lock()

    def rows(self, sql: str) -> list[tuple]:
        with self.lock:
            cur = self.conn.cursor()
            try:
                cur.execute(sql)
                return list(cur.fetchall())
            finally:
                cur.close()

    def sessions_opened(self) -> int | None:
        """PostgreSQL: sessions ever established to this database (pg_stat_database, PostgreSQL 14+)."""
        if not self.postgres:
            return None
        with contextlib.suppress(Exception):
            return int(self.rows("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")[0][0])
        return None

    def server_pid(self) -> int | None:
        """PostgreSQL's postmaster, when it runs on this machine: its tree holds every backend."""
        if not self.postgres:
            return None
        with contextlib.suppress(Exception):
            backend = int(self.rows("SELECT pg_backend_pid()")[0][0])
            with open(f"/proc/{backend}/stat", "rb") as f:
                raw = f.read()
            return int(raw[raw.rfind(b")") + 2 :].split()[1])
        return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


class PostgresDatabase:
    """A fresh database on the server of `admin_url`, dropped by drop()."""

    def __init__(self, admin_url: str) -> None:
        import psycopg

        self.psycopg = psycopg
        self.admin_url = admin_url.replace("postgres://", "postgresql://", 1)
        self.name = f"crucible_load_{os.getpid()}_{int(time.time())}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        base = admin_url.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"

    def drop(self) -> None:
        with self.psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def manage(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [str(VENV_PYTHON), "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise BenchError(f"manage.py {' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


# Users, their quota overrides and tokens, made in one `manage.py shell` (the spec comes in as JSON).
CREATE_USERS = """
import json
from django.contrib.auth import get_user_model
from evaluations.accounts import tokens
from evaluations.models import QuotaOverride
out = []
for u in json.loads(SPEC):
    user = get_user_model().objects.create_user(u["name"])
    QuotaOverride.objects.create(user=user, **u["quotas"])
    out.append({"name": u["name"], "id": user.pk, "token": tokens.token_create(user=user, name="load")[1]})
print("LOAD-USERS " + json.dumps(out))
"""


def create_users(env: dict[str, str], spec: list[dict[str, Any]]) -> list[dict[str, Any]]:
    script = f"SPEC = {json.dumps(json.dumps(spec))}\n" + CREATE_USERS
    out = manage(env, "shell", "-c", script)
    for line in out.splitlines():
        if line.startswith("LOAD-USERS "):
            return json.loads(line.removeprefix("LOAD-USERS "))
    raise BenchError(f"manage.py shell made no users:\n{out}")


class Reconciler:
    """`manage.py reconcile` in a session of its own (when the command exists), output to a log."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log = open(log_path, "ab", buffering=0)
        self.popen = subprocess.Popen(
            [str(VENV_PYTHON), "manage.py", "reconcile"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.exit_code_while_running: int | None = None

    def check(self) -> None:
        if self.exit_code_while_running is None and self.popen.poll() is not None:
            self.exit_code_while_running = self.popen.returncode

    def stop(self, timeout: float = 15.0) -> None:
        self.check()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)
        self.log.close()


# -- raw runsc -----------------------------------------------------------------------------------------

_raw_ids = itertools.count(1)


def raw_run_only(raw: RawRunsc) -> None:
    """A foreground `runsc run` of the raw bundle, no delete: what the engine does for a run that ended
    by itself (it deletes only when state is left, and so does this)."""
    n = next(_raw_ids)
    cid = f"cload-{os.getpid()}-{n}"
    root = raw.work / f"o{n}"
    root.mkdir(mode=0o700)
    proc = subprocess.run(
        raw.command(root, "run", "--bundle", str(raw.bundle), cid), stdin=subprocess.DEVNULL, capture_output=True
    )
    if any(root.iterdir()):
        subprocess.run(raw.command(root, "delete", "--force", cid), capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
    if proc.returncode != 0 or proc.stdout != raw.expected:
        raise BenchError(f"runsc run: exit {proc.returncode}, stdout {proc.stdout!r}, stderr {proc.stderr[-2000:]!r}")


def raw_window(samplers: Sequence[Callable[[], object]], seconds: float) -> dict[str, float]:
    """One thread per sampler, each back to back for `seconds`. A run still going at the end counts
    for the fraction of it inside the window (as bench/sandbox.py's throughput)."""
    spans: list[tuple[float, float]] = []
    errors: list[str] = []
    busy0 = machine_busy_seconds()
    start = time.perf_counter()
    deadline = start + seconds

    def loop(sample: Callable[[], object]) -> None:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                sample()
            except Exception as exc:  # noqa: BLE001 - recorded, and the window is reported broken
                errors.append(f"{type(exc).__name__}: {str(exc)[:500]}")
                return
            spans.append((t, time.perf_counter()))

    threads = [threading.Thread(target=loop, args=(s,)) for s in samplers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise BenchError(f"raw runsc: {errors[0]}")
    busy, elapsed = machine_busy_seconds() - busy0, time.perf_counter() - start
    credit = sum(min(1.0, (deadline - a) / (b - a)) for a, b in spans)
    return {
        "runs": round(credit, 2),
        "seconds": seconds,
        "runs_per_min": round(credit / seconds * 60, 1),
        # The whole machine while the window ran (its last runs included): what raw runs cost.
        "busy_cores": round(busy / elapsed, 2),
        "machine_cpu_ms_per_run": round(busy / len(spans) * 1000, 1) if spans else None,
    }


# -- API readers: a process of their own, so the load generator's GIL is not in their timings ----------


def reader_main(base_url: str, tokens: list[str], rate: float, start, stop, out) -> None:
    """Forked before any thread exists. Two threads, each at rate/2: GET the run list of a random
    user, then GET the detail of one of the runs it listed (the 20 newest), alternately."""
    start.wait()
    samples: list[tuple[str, int, float, float]] = []  # (kind, HTTP status or 0 on error, seconds, at)

    def loop(offset: float) -> None:
        session = requests.Session()
        interval = 2.0 / rate
        due = time.monotonic() + offset
        listed: tuple[str, list[int]] | None = None
        while not stop.is_set():
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            due += interval
            if listed is None or not listed[1]:
                token = random.choice(tokens)
                kind, path = "list", "/api/v1/runs/"
            else:
                token, ids = listed
                kind, path = "detail", f"/api/v1/runs/{random.choice(ids)}/"
            t0 = time.perf_counter()
            at = time.time()
            try:
                resp = session.get(base_url + path, headers={"Authorization": f"Token {token}"}, timeout=30)
                body = resp.content
                took = time.perf_counter() - t0
                samples.append((kind, resp.status_code, took, at))
            except requests.RequestException:
                samples.append((kind, 0, time.perf_counter() - t0, at))
                listed = None
                continue
            if kind == "list":
                ids = [r["id"] for r in json.loads(body)["results"][:20]] if resp.status_code == 200 else []
                listed = (token, ids)
            else:
                listed = None

    threads = [threading.Thread(target=loop, args=(i / rate,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(samples)


# -- samplers ----------------------------------------------------------------------------------------


class QuotaSampler(threading.Thread):
    """Every `interval`: queued + running runs per user (one query), against each user's quota."""

    def __init__(self, db: Database, quotas: dict[int, int], interval: float) -> None:
        super().__init__(daemon=True)
        self.db, self.quotas, self.interval = db, quotas, interval
        self.stopping = threading.Event()
        self.samples = 0
        self.max_active = dict.fromkeys(quotas, 0)
        self.max_running_total = 0
        self.max_active_total = 0
        self.violations: list[dict[str, Any]] = []
        self.violation_samples = 0
        self.error: str | None = None
        self.max_db_connections: int | None = None  # PostgreSQL: this database's, every 10th sample

    def run(self) -> None:
        sql = (
            "SELECT s.owner_id, r.status, COUNT(*) FROM evaluations_run r "
            "JOIN evaluations_submission s ON s.id = r.submission_id "
            "WHERE r.status IN ('queued', 'running') GROUP BY s.owner_id, r.status"
        )
        while not self.stopping.wait(self.interval):
            try:
                rows = self.db.rows(sql)
            except Exception as exc:  # noqa: BLE001 - reported
                self.error = f"{type(exc).__name__}: {exc}"
                return
            self.samples += 1
            active: collections.Counter[int] = collections.Counter()
            running = 0
            for owner, status, count in rows:
                active[owner] += count
                if status == "running":
                    running += count
            self.max_running_total = max(self.max_running_total, running)
            self.max_active_total = max(self.max_active_total, sum(active.values()))
            over = False
            for owner, count in active.items():
                if owner in self.max_active:
                    self.max_active[owner] = max(self.max_active[owner], count)
                    if count > self.quotas[owner]:
                        over = True
                        if len(self.violations) < 50:
                            self.violations.append({"at": time.time(), "user_id": owner, "active": count})
            self.violation_samples += over
            if self.db.postgres and self.samples % 10 == 1:
                with contextlib.suppress(Exception):
                    sql_conns = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    n = int(self.db.rows(sql_conns)[0][0])
                    self.max_db_connections = max(self.max_db_connections or 0, n)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)


PAGE = os.sysconf("SC_PAGE_SIZE")


class MemorySampler(threading.Thread):
    """Every `interval`: RSS summed over each root's process tree (children found through /proc's
    ppid). The worker's tree is split into its Python processes (Celery) and the rest (the warm
    launchers' `sh` and each run's runsc processes)."""

    def __init__(self, roots: dict[str, int], interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.roots, self.interval = roots, interval
        self.stopping = threading.Event()
        self.peak: dict[str, int] = collections.defaultdict(int)
        self.peak_processes: dict[str, int] = collections.defaultdict(int)
        self.samples = 0
        self._is_python: dict[int, bool] = {}

    def _python(self, pid: int) -> bool:
        if pid not in self._is_python:
            try:
                self._is_python[pid] = os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith("python")
            except OSError:
                return False
        return self._is_python[pid]

    def sample(self) -> None:
        children: dict[int, list[int]] = collections.defaultdict(list)
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
                ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children[ppid].append(int(name))
        totals: dict[str, int] = collections.defaultdict(int)
        counts: dict[str, int] = collections.defaultdict(int)
        for label, root in self.roots.items():
            todo = [root]
            while todo:
                pid = todo.pop()
                todo.extend(children.get(pid, ()))
                try:
                    with open(f"/proc/{pid}/statm", "rb") as f:
                        rss = int(f.read().split()[1]) * PAGE
                except (OSError, ValueError, IndexError):
                    continue
                totals[label] += rss
                counts[label] += 1
                if label == "worker":
                    part = "worker_python" if self._python(pid) else "worker_sandboxes"
                    totals[part] += rss
                    counts[part] += 1
        for key, value in totals.items():
            self.peak[key] = max(self.peak[key], value)
        for key, value in counts.items():
            self.peak_processes[key] = max(self.peak_processes[key], value)
        self.samples += 1

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)

    def report(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "peak_rss_mib": {k: round(v / MiB, 1) for k, v in sorted(self.peak.items())},
            "peak_processes": dict(sorted(self.peak_processes.items())),
        }


TICK = os.sysconf("SC_CLK_TCK")
LATE_SECONDS = 10.0  # how long a follower reads on after a terminal status that came before all output
# How long the run lists may take, once every run has ended, to report the last ends before they close.
LIST_CATCH_UP_SECONDS = 15.0


def tree_cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU time so far of each root's process tree: its live processes' own time plus what they
    collected from children they reaped. The worker's is split into its Python processes' own time
    and the rest (the sandboxes: the runsc processes a pool process reaped, or that still run).
    Take the difference of two calls made while no run is going."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    stats: dict[int, list[bytes]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        stats[int(name)] = fields
        children[int(fields[1])].append(int(name))
    out: dict[str, float] = collections.defaultdict(float)
    for label, root in roots.items():
        todo = [root]
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, ()))
            stat = stats.get(pid)
            if stat is None:
                continue
            fields = stat
            own = (int(fields[11]) + int(fields[12])) / TICK
            reaped = (int(fields[13]) + int(fields[14])) / TICK
            if label != "worker":
                out[label] += own + reaped
                continue
            try:
                python = os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith("python")
            except OSError:
                python = False
            if python:
                out["worker_python"] += own
                out["worker_sandboxes"] += reaped
            else:
                out["worker_sandboxes"] += own + reaped
    return out


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all CPUs; /proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / TICK


# -- users and followers -----------------------------------------------------------------------------


@dataclasses.dataclass
class LoadUser:
    index: int
    name: str
    user_id: int
    token: str
    concurrent_quota: int
    share: int  # runs this user submits
    cond: threading.Condition = dataclasses.field(default_factory=threading.Condition)
    ended: set[int] = dataclasses.field(default_factory=set)  # run ids its list socket saw end
    runs: list[int] = dataclasses.field(default_factory=list)
    responses: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    waits_notified: int = 0
    waits_timed_out: int = 0
    list_connected: threading.Event = dataclasses.field(default_factory=threading.Event)


@dataclasses.dataclass
class RunInfo:
    user: int  # LoadUser.index
    tag: str
    created_at: float  # time.time() when the 201 arrived


class Live:
    """An asyncio loop on a thread of its own: each user's run-list socket, and the followers."""

    def __init__(self, host: str, port: int, users: list[LoadUser], runs: dict[int, RunInfo], followers: int) -> None:
        self.base = f"ws://{host}:{port}"
        self.users, self.runs, self.n_followers = users, runs, followers
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.followed: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.handshakes: collections.Counter[str] = collections.Counter()
        self.list_terminal_duplicates = 0
        self.list_running: collections.Counter[int] = collections.Counter()
        self.list_reconnects = 0
        self.unfollowed = 0

    # Called from other threads.

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=120)

    def follow(self, run_id: int) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, run_id)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=180)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    # On the loop.

    def _problem(self, text: str) -> None:
        if len(self.problems) < 200:
            self.problems.append(text)

    async def _start(self) -> None:
        self.queue: asyncio.Queue[int | None] = asyncio.Queue()
        self.stopping = False
        self.list_tasks = [asyncio.create_task(self._list_socket(u)) for u in self.users]
        deadline = time.monotonic() + 60
        while not all(u.list_connected.is_set() for u in self.users):
            if time.monotonic() > deadline:
                raise BenchError("the users' run-list websockets did not all connect within 60 s")
            await asyncio.sleep(0.05)
        self.follower_tasks = [asyncio.create_task(self._follower()) for _ in range(self.n_followers)]

    async def _stop(self) -> None:
        self.stopping = True
        while not self.queue.empty():
            if self.queue.get_nowait() is not None:
                self.unfollowed += 1
        for _ in self.follower_tasks:
            self.queue.put_nowait(None)
        _, pending = await asyncio.wait(self.follower_tasks, timeout=60)
        for task in pending:
            task.cancel()
        deadline = time.monotonic() + LIST_CATCH_UP_SECONDS
        while time.monotonic() < deadline and not set(self.runs) <= set().union(*(u.ended for u in self.users)):
            await asyncio.sleep(0.1)
        for task in self.list_tasks:
            task.cancel()
        await asyncio.gather(*self.list_tasks, *pending, return_exceptions=True)

    async def _list_socket(self, user: LoadUser) -> None:
        headers = {"Authorization": f"Token {user.token}"}
        while not self.stopping:
            try:
                async with connect(f"{self.base}/ws/runs/", additional_headers=headers, proxy=None) as ws:
                    self.handshakes["101"] += 1
                    user.list_connected.set()
                    async for frame in ws:
                        message = json.loads(frame)
                        if message.get("type") != "status":
                            continue
                        run_id, status = message["id"], message["status"]
                        if status == "running":
                            self.list_running[run_id] += 1
                        if status in TERMINAL:
                            with user.cond:
                                if run_id in user.ended:
                                    self.list_terminal_duplicates += 1
                                user.ended.add(run_id)
                                user.cond.notify_all()
                self._problem(f"user {user.name}: run-list websocket closed ({ws.close_code})")
            except asyncio.CancelledError:
                raise
            except InvalidStatus as exc:
                self.handshakes[str(exc.response.status_code)] += 1
                self._problem(f"user {user.name}: run-list websocket refused: HTTP {exc.response.status_code}")
            except (OSError, WebSocketException, TimeoutError) as exc:
                self._problem(f"user {user.name}: run-list websocket: {type(exc).__name__}: {exc}")
            self.list_reconnects += 1
            await asyncio.sleep(0.5)

    async def _follower(self) -> None:
        while True:
            run_id = await self.queue.get()
            if run_id is None:
                return
            try:
                self.followed.append(await self._follow_one(run_id))
            except Exception as exc:  # noqa: BLE001 - a follower goes on with the next run
                self._problem(f"run {run_id}: follower failed: {type(exc).__name__}: {exc}")
                self.followed.append({"id": run_id, "ok": False, "connected_at": None, "terminal_at": None})

    async def _follow_one(self, run_id: int) -> dict[str, Any]:
        """Follow one run to its terminal status. If the output is not complete by then, read on for
        LATE_SECONDS to tell output that comes after the status (against the protocol) from output
        that never comes; either is a problem, reported with the messages received."""
        info = self.runs[run_id]
        user = self.users[info.user]
        expected = run_stdout(info.tag)
        got = {"stdout": bytearray(), "stderr": bytearray()}
        record: dict[str, Any] = {"id": run_id, "ok": False, "connected_at": None, "terminal_at": None}
        trace: list[str] = []  # what arrived, for the problem report
        late = 0
        t0 = time.monotonic()

        def note(message: dict[str, Any]) -> None:
            at = f"{(time.monotonic() - t0) * 1000:.0f}ms"
            if message["type"] == "output":
                trace.append(f"{at} {message['stream']}@{message['offset']}+{len(base64.b64decode(message['data']))}")
            elif message["type"] == "status":
                trace.append(f"{at} {message['status']}")

        try:
            async with connect(
                f"{self.base}/ws/runs/{run_id}/",
                additional_headers={"Authorization": f"Token {user.token}"},
                proxy=None,
                max_size=2 * MiB,
            ) as ws:
                self.handshakes["101"] += 1
                record["connected_at"] = time.time()
                trace.append("open")
                async with asyncio.timeout(600):
                    async for frame in ws:
                        message = json.loads(frame)
                        note(message)
                        if message["type"] == "output":
                            stream = message["stream"]
                            if message["offset"] != len(got[stream]):
                                self._problem(f"run {run_id}: {stream} out of order: {' | '.join(trace)}")
                                return record
                            got[stream] += base64.b64decode(message["data"])
                        elif message["type"] == "status" and message["status"] in TERMINAL:
                            record["terminal_at"] = time.time()
                            record["status"] = message["status"]
                            break
                if record["terminal_at"] is None:
                    self._problem(f"run {run_id}: websocket closed ({ws.close_code}) before a terminal status")
                    return record
                if bytes(got["stdout"]) != expected:
                    with contextlib.suppress(TimeoutError, ConnectionClosed):
                        async with asyncio.timeout(LATE_SECONDS):
                            async for frame in ws:
                                message = json.loads(frame)
                                note(message)
                                if message["type"] == "output":
                                    late += len(base64.b64decode(message["data"]))
        except InvalidStatus as exc:
            self.handshakes[str(exc.response.status_code)] += 1
            self._problem(f"run {run_id}: websocket refused: HTTP {exc.response.status_code}")
            return record
        except (OSError, WebSocketException, TimeoutError) as exc:
            self._problem(f"run {run_id}: websocket: {type(exc).__name__}: {exc}")
            return record
        if record["status"] != "succeeded" or bytes(got["stdout"]) != expected or got["stderr"]:
            record["late_output_bytes"] = late
            self._problem(
                f"run {run_id}: {record['status']} with stdout {bytes(got['stdout'])[:100]!r} and stderr "
                f"{bytes(got['stderr'])[:100]!r} before it; {late} byte(s) came after it within {LATE_SECONDS:g} s; "
                f"received: {' | '.join(trace)}"
            )
            return record
        record["ok"] = True
        return record


class Load:
    """The users' threads: submit, and on a concurrent-run 429 wait for one of their runs to end."""

    def __init__(self, base_url: str, users: list[LoadUser], wall_seconds: float, retry_seconds: float) -> None:
        self.base_url = base_url
        self.users = users
        self.wall_seconds = wall_seconds
        self.retry_seconds = retry_seconds
        self.runs: dict[int, RunInfo] = {}
        self.live: Live | None = None
        self.http: list[tuple[str, int, float]] = []  # (kind, status or 0, seconds)
        self.problems: list[str] = []
        self.first_post_at: float | None = None
        self.abort = threading.Event()

    def _problem(self, text: str) -> None:
        if len(self.problems) < 200:
            self.problems.append(text)

    def user_loop(self, user: LoadUser) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {user.token}"
        url = self.base_url + "/api/v1/submissions/"
        k = errors = 0
        while k < user.share and not self.abort.is_set():
            tag = f"{user.index:02d}-{k:04d}"
            with user.cond:
                seen = len(user.ended)
            if self.first_post_at is None:
                self.first_post_at = time.time()
            t0 = time.perf_counter()
            try:
                resp = session.post(
                    url,
                    json={"name": f"load {tag}", "code": run_code(tag), "wall_seconds": self.wall_seconds},
                    timeout=60,
                )
            except requests.RequestException as exc:
                self.http.append(("submit", 0, time.perf_counter() - t0))
                self._problem(f"user {user.name}: POST failed: {type(exc).__name__}: {exc}")
                user.responses["error"] += 1
                errors += 1
                if errors > 20:
                    self.abort.set()
                time.sleep(0.5)
                continue
            took = time.perf_counter() - t0
            code = resp.status_code
            if code == 201:
                self.http.append(("submit_201", code, took))
                run_id = resp.json()["id"]
                self.runs[run_id] = RunInfo(user.index, tag, time.time())
                user.runs.append(run_id)
                user.responses["201"] += 1
                assert self.live is not None
                self.live.follow(run_id)
                k += 1
                continue
            if code == 429:
                self.http.append(("submit_429", code, took))
                body = resp.json()
                quota = body.get("quota") or "rate_limit"
                user.responses[f"429 {quota}"] += 1
                if quota == "concurrent_runs":
                    if body.get("limit") != user.concurrent_quota or body.get("usage", 0) < body.get("limit", 0):
                        self._problem(f"user {user.name}: 429 body does not fit quota {user.concurrent_quota}: {body}")

                    def ended_since(seen: int = seen) -> bool:
                        return len(user.ended) > seen

                    with user.cond:
                        if user.cond.wait_for(ended_since, timeout=self.retry_seconds):
                            user.waits_notified += 1
                        else:
                            user.waits_timed_out += 1
                else:
                    self._problem(f"user {user.name}: 429 for {quota}: {body}")
                    time.sleep(1.0)
                continue
            self.http.append(("submit_other", code, took))
            user.responses[str(code)] += 1
            self._problem(f"user {user.name}: POST answered {code}: {resp.text[:300]}")
            errors += 1
            if errors > 20:
                self.abort.set()
            time.sleep(0.5)


# -- the logs ----------------------------------------------------------------------------------------

SANDBOX_STARTED = re.compile(rb"sandbox (crucible-runsc-[0-9a-f]+) started")
TASK_RECEIVED = re.compile(rb"Task [\w.]+\[([^\]]+)\] received")
RUN_OF_TASK = re.compile(rb"^run-(\d+)-")  # the task ids evaluations.runs gives its messages
RECONCILER_DECISION = re.compile(rb"reconciler: run (\d+): (\w+) \(")
ACCESS_LINE = re.compile(rb'"([A-Z]+) ([^" ]+)[^"]*" (\d{3}) ')
PROBLEM_LINE = re.compile(rb"Traceback|\bERROR\b|\bCRITICAL\b|\bWARNING\b|\bException\b")
NOISE = re.compile(rb"\d{4}-\d\d-\d\d[ T][\d:,.]+|\[[\d\-:, ]+\]|\b\d+\b|[0-9a-f]{8}-[0-9a-f-]{27}")
SKIPPED_DELIVERY = re.compile(rb"run \d+ is not queued; skipping this delivery")


def scan_log(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {"error": str(exc)}
    problems: collections.Counter[str] = collections.Counter()
    for line in data.splitlines():
        if PROBLEM_LINE.search(line) and not ACCESS_LINE.search(line):
            problems[NOISE.sub(b"#", line).decode("utf-8", "replace").strip()[:200]] += 1
    return {"bytes": len(data), "problem_lines": sum(problems.values()), "problems": problems.most_common(15)}


def scan_worker_log(path: Path) -> dict[str, Any]:
    data = path.read_bytes() if path.exists() else b""
    started = SANDBOX_STARTED.findall(data)
    received = TASK_RECEIVED.findall(data)
    per_run = collections.Counter(m.group(1) for t in received if (m := RUN_OF_TASK.match(t)))
    return {
        "sandbox_started_lines": len(started),
        "sandbox_ids_distinct": len(set(started)),
        "tasks_received": len(received),
        "task_ids_received_twice": sum(1 for c in collections.Counter(received).values() if c > 1),
        "runs_whose_message_came_more_than_once": sum(1 for c in per_run.values() if c > 1),
        "deliveries_skipped_not_queued": len(SKIPPED_DELIVERY.findall(data)),
    }


def scan_reconciler_log(path: Path) -> dict[str, int]:
    data = path.read_bytes() if path.exists() else b""
    return dict(collections.Counter(action.decode() for _, action in RECONCILER_DECISION.findall(data)))


def scan_access_log(path: Path) -> dict[str, Any]:
    data = path.read_bytes() if path.exists() else b""
    statuses: collections.Counter[str] = collections.Counter()
    errors: list[str] = []
    count = 0
    for m in ACCESS_LINE.finditer(data):
        method, target, code = m.group(1).decode(), m.group(2).decode(), m.group(3).decode()
        statuses[f"{method} {code}"] += 1
        if code.startswith("5"):
            count += 1
            if len(errors) < 20:
                errors.append(f"{method} {target} {code}")
    return {"by_method_and_status": dict(sorted(statuses.items())), "5xx_count": count, "5xx": errors}


# -- the run -----------------------------------------------------------------------------------------


def wait_terminal(db: Database, owner_ids: list[int], expected: int, timeout: float) -> tuple[bool, float]:
    owners = ", ".join(str(i) for i in owner_ids)
    sql = (
        "SELECT COUNT(*), SUM(CASE WHEN r.status IN ('queued', 'running') THEN 1 ELSE 0 END) "
        "FROM evaluations_run r JOIN evaluations_submission s ON s.id = r.submission_id "
        f"WHERE s.owner_id IN ({owners})"
    )
    deadline = time.monotonic() + timeout
    while True:
        total, active = db.rows(sql)[0]
        if total >= expected and not active:
            return True, time.time()
        if time.monotonic() > deadline:
            return False, time.time()
        time.sleep(0.1)


def run_rows(db: Database, owner_ids: list[int]) -> list[dict[str, Any]]:
    owners = ", ".join(str(i) for i in owner_ids)
    cols = [
        "id", "owner_id", "name", "status", "reason", "detail", "stdout_bytes", "stderr_bytes",
        "deliveries", "queued_at", "started_at", "finished_at",
    ]  # fmt: skip
    sql = (
        "SELECT r.id, s.owner_id, s.name, r.status, r.reason, r.detail, r.stdout_bytes, r.stderr_bytes, "
        "r.deliveries, r.queued_at, r.started_at, r.finished_at "
        "FROM evaluations_run r JOIN evaluations_submission s ON s.id = r.submission_id "
        f"WHERE s.owner_id IN ({owners}) ORDER BY r.id"
    )
    out = []
    for row in db.rows(sql):
        rec = dict(zip(cols, row, strict=True))
        for key in ("queued_at", "started_at", "finished_at"):
            rec[key] = epoch(rec[key])
        out.append(rec)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=1000, help="runs submitted in all (default 1000)")
    parser.add_argument("--users", type=int, default=20, help="users submitting (default 20)")
    parser.add_argument("--followers", type=int, default=50, help="websocket clients following runs (default 50)")
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's pool processes (default 2)")
    parser.add_argument(
        "--web-processes", type=int, default=2, help="daphnes on the web's port, as the Procfile's (default 2)"
    )
    parser.add_argument(
        "--quotas", default="2,3,4", help="concurrent-run quotas given to the users in turn (default 2,3,4)"
    )
    parser.add_argument("--wall-seconds", type=float, default=10.0, help="each run's wall-time limit (default 10)")
    parser.add_argument(
        "--retry-seconds",
        type=float,
        default=5.0,
        help="after a concurrent-run 429, submit again at the latest after this long (default 5)",
    )
    parser.add_argument("--raw-seconds", type=float, default=20.0, help="each raw runsc window (default 20; 4 windows)")
    parser.add_argument("--read-rate", type=float, default=10.0, help="API reads per second (default 10)")
    parser.add_argument("--sample-ms", type=float, default=100.0, help="quota sampling interval (default 100 ms)")
    parser.add_argument("--warmup", type=int, default=4, help="unmeasured runs before the raw windows (default 4)")
    parser.add_argument("--timeout", type=float, default=None, help="for all runs to end (default 600 s + 1 s/run)")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite database instead of PostgreSQL")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("CRUCIBLE_BENCH_PG_URL", DEFAULT_PG_URL),
        help=f"PostgreSQL server (a database on it) where the fresh database is made (default {DEFAULT_PG_URL})",
    )
    add_stack_options(
        parser, result="load.json", redis_url=DEFAULT_REDIS_URL, keep="the temporary var dir (logs) and the database"
    )
    args = parser.parse_args()

    import redis

    if os.geteuid() != 0:
        print("bench: runsc and the Crucible worker need root", file=sys.stderr)
        return 2
    quotas_cycle = [int(q) for q in args.quotas.split(",")]
    if args.users < 1 or args.runs < args.users or min(quotas_cycle) < 1:
        print("bench: need -n >= --users >= 1 and quotas >= 1", file=sys.stderr)
        return 2
    timeout = args.timeout if args.timeout is not None else 600.0 + args.runs
    work = Path(tempfile.mkdtemp(prefix="cload-"))  # short: runsc's socket paths must stay < 108 bytes
    var_dir = work / "var"
    (var_dir / "sandboxes").mkdir(parents=True)
    log_dir = work / "logs"
    started = dt.datetime.now(dt.UTC)
    pg: PostgresDatabase | None = None
    db: Database | None = None
    reconciler: Reconciler | None = None
    result: dict[str, Any] = {}
    try:
        engine = RunscEngine(EngineConfig(images_dir=args.images_dir, state_dir=work / "unused"))
        engine.check_binary()
        info = machine_info(engine.runtime_version(), engine.platform())
        print(
            f"machine: {info['cpus']} CPUs, {info['os']}, kernel {info['kernel']}, {info['runsc']} "
            f"({info['runsc_platform']}), load {info['loadavg_at_start']}",
            flush=True,
        )
        if args.sqlite:
            db_url = f"sqlite:///{var_dir / 'crucible.sqlite3'}"
            db_label = "sqlite (fresh, WAL)"
        else:
            pg = PostgresDatabase(args.pg_url)
            db_url = pg.url
            db_label = f"postgresql (fresh database {pg.name})"
        redis.Redis.from_url(args.redis_url, socket_connect_timeout=2).flushdb()
        env = dict(os.environ)
        env.update(
            {
                "CRUCIBLE_VAR_DIR": str(var_dir),
                "CRUCIBLE_DATABASE_URL": db_url,
                "CRUCIBLE_REDIS_URL": args.redis_url,
                "CRUCIBLE_IMAGES_DIR": str(args.images_dir),
                "CRUCIBLE_SANDBOX_STATE_DIR": str(var_dir / "sandboxes"),
                "CRUCIBLE_SANDBOX_ENGINE": "runsc",
                "CRUCIBLE_WORKERS": str(args.concurrency),
                # The load is the quotas' to limit: the per-token rate limits would throttle 20 users first.
                "CRUCIBLE_API_RATE": "off",
                "CRUCIBLE_API_WRITE_RATE": "off",
                "DJANGO_SETTINGS_MODULE": "crucible_site.settings",
            }
        )
        t0 = time.perf_counter()
        manage(env, "migrate", "--noinput", "-v0")
        per_day = args.runs + args.warmup
        cpu_per_day = per_day * args.wall_seconds * 4  # every run at its worst case, on up to 4 cores
        spec: list[dict[str, Any]] = [
            {
                "name": f"load-{i:02d}",
                "quotas": {
                    "concurrent_runs": quotas_cycle[i % len(quotas_cycle)],
                    "runs_per_day": per_day,
                    "cpu_seconds_per_day": cpu_per_day,
                },
            }
            for i in range(args.users)
        ]
        spec.append(
            {
                "name": "load-warmup",
                "quotas": {"concurrent_runs": 100, "runs_per_day": per_day, "cpu_seconds_per_day": cpu_per_day},
            }
        )
        made = create_users(env, spec)
        warm_user, made = made[-1], made[:-1]
        shares = [args.runs // args.users + (1 if i < args.runs % args.users else 0) for i in range(args.users)]
        users = [
            LoadUser(i, m["name"], m["id"], m["token"], spec[i]["quotas"]["concurrent_runs"], shares[i])
            for i, m in enumerate(made)
        ]
        print(f"database migrated, {len(users)} users made in {time.perf_counter() - t0:.1f}s ({db_label})", flush=True)

        db = Database(db_url)
        with Stack(env, log_dir=log_dir, concurrency=args.concurrency, web_processes=args.web_processes) as stack:
            if RECONCILE_COMMAND.exists():
                reconciler = Reconciler(stack.env, log_dir / "reconciler.log")
            print(f"stack up at {stack.base_url} (logs: {log_dir})", flush=True)

            # The API readers: forked now, while this process has no thread yet.
            ctx = multiprocessing.get_context("fork")
            read_start, read_stop, read_out = ctx.Event(), ctx.Event(), ctx.Queue()
            reader = ctx.Process(
                target=reader_main,
                args=(stack.base_url, [u.token for u in users], args.read_rate, read_start, read_stop, read_out),
                daemon=True,
            )
            reader.start()

            # Warm-up: the worker's pool processes and first sandboxes; runsc's page cache for raw.
            warm = requests.Session()
            warm.headers["Authorization"] = f"Token {warm_user['token']}"
            for i in range(args.warmup):
                resp = warm.post(stack.url("/api/v1/submissions/"), json={"code": RAW_CODE, "name": f"warm {i}"})
                if resp.status_code != 201:
                    raise BenchError(f"warm-up POST: {resp.status_code} {resp.text[:300]}")
            ok, _ = wait_terminal(db, [warm_user["id"]], args.warmup, 120)
            if not ok:
                raise BenchError(f"the warm-up runs did not end within 120 s\n{stack.logs()}")
            raws = [RawRunsc(engine, work / f"raw{i}", RAW_CODE, RAW_EXPECTED) for i in range(args.concurrency)]
            for raw in raws:
                raw.sample()
                raw_run_only(raw)

            run_only = [functools.partial(raw_run_only, raw) for raw in raws]
            run_delete = [raw.sample for raw in raws]
            raw_results: dict[str, list[dict[str, float]]] = {"run": [], "run_delete": []}
            print(f"raw runsc at concurrency {args.concurrency}, before: 2 x {args.raw_seconds:g}s ...", flush=True)
            raw_results["run"].append(raw_window(run_only, args.raw_seconds))
            raw_results["run_delete"].append(raw_window(run_delete, args.raw_seconds))
            loadavg_before_load = loadavg()

            # The load.
            load = Load(stack.base_url, users, args.wall_seconds, args.retry_seconds)
            assert stack.port is not None
            live = Live(stack.host, stack.port, users, load.runs, args.followers)
            load.live = live
            live.start()
            quota_sampler = QuotaSampler(db, {u.user_id: u.concurrent_quota for u in users}, args.sample_ms / 1000)
            roots = {"web": stack.web.pid, "worker": stack.worker.pid}  # type: ignore[union-attr]
            if reconciler is not None:
                roots["reconciler"] = reconciler.pid
            memory = MemorySampler(dict(roots))
            # The servers, when they run here (their whole tree: other clients' work counts too).
            if (postmaster := db.server_pid()) is not None:
                roots["postgres"] = postmaster
            with contextlib.suppress(Exception):
                redis_info = redis.Redis.from_url(args.redis_url, socket_connect_timeout=2).info("server")
                if os.path.exists(f"/proc/{redis_info['process_id']}"):
                    roots["redis"] = int(redis_info["process_id"])
            memory.sample()
            cpu_trees0, busy0 = tree_cpu_seconds(roots), machine_busy_seconds()
            sessions0 = db.sessions_opened()
            children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            quota_sampler.start()
            memory.start()
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            print(
                f"load: {args.runs} runs from {args.users} users, {args.followers} followers, "
                f"reads at {args.read_rate:g}/s ...",
                flush=True,
            )
            load_start = time.time()
            read_start.set()
            threads = [threading.Thread(target=load.user_loop, args=(u,), daemon=True) for u in users]
            for t in threads:
                t.start()
            progress_at = time.monotonic() + 15
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=1)
                if time.monotonic() > progress_at:
                    progress_at += 15
                    print(f"  {len(load.runs)}/{args.runs} submitted, load {loadavg()}", flush=True)
                if time.time() - load_start > timeout:
                    load.abort.set()
            submitted = len(load.runs)
            all_ended, all_ended_at = wait_terminal(
                db, [u.user_id for u in users], submitted, max(10.0, timeout - (time.time() - load_start))
            )
            read_stop.set()
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            quota_sampler.stop()
            memory.stop()
            print(
                f"  all {submitted} runs ended after {all_ended_at - load_start:.1f}s" if all_ended else
                f"  runs still not terminal after {timeout:g}s",
                flush=True,
            )  # fmt: skip
            live.stop()
            read_samples = read_out.get(timeout=60)
            reader.join(timeout=30)
            cpu_trees1, busy1 = tree_cpu_seconds(roots), machine_busy_seconds()
            children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_seconds = {k: round(cpu_trees1[k] - cpu_trees0.get(k, 0.0), 1) for k in cpu_trees1}
            cpu_seconds["load_generator"] = round((cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime), 1)
            cpu_seconds["api_reader"] = round(
                (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime), 1
            )
            cpu_seconds["machine"] = round(busy1 - busy0, 1)
            cpu_seconds["elapsed"] = round(time.time() - load_start, 1)
            if reconciler is not None:
                reconciler.check()
            loadavg_after_load = loadavg()

            print(f"raw runsc at concurrency {args.concurrency}, after: 2 x {args.raw_seconds:g}s ...", flush=True)
            raw_results["run_delete"].append(raw_window(run_delete, args.raw_seconds))
            raw_results["run"].append(raw_window(run_only, args.raw_seconds))
            if reconciler is not None:
                reconciler.stop()
        sessions1 = db.sessions_opened()  # the stack is stopped: every session of the load was reported
        rows = run_rows(db, [u.user_id for u in users])
        warm_rows = run_rows(db, [warm_user["id"]])

        result = analyse(
            args=args,
            info=info,
            started=started,
            db_label=db_label,
            users=users,
            load=load,
            live=live,
            rows=rows,
            warm_rows=warm_rows,
            submitted=submitted,
            all_ended=all_ended,
            load_start=load_start,
            all_ended_at=all_ended_at,
            raw_results=raw_results,
            read_samples=read_samples,
            quota_sampler=quota_sampler,
            memory=memory,
            cpu_seconds=cpu_seconds,
            db_sessions=None if sessions0 is None or sessions1 is None else sessions1 - sessions0,
            log_dir=log_dir,
            reconciler=reconciler,
            loadavgs={"before_load": loadavg_before_load, "after_load": loadavg_after_load},
        )
    except BenchError as exc:
        print(f"bench: measurement failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if db is not None:
            db.close()
        if reconciler is not None and reconciler.popen.poll() is None:
            reconciler.stop()
        if args.keep:
            print(f"kept {work}" + (f" and database {pg.name}" if pg else ""))
        else:
            shutil.rmtree(work, ignore_errors=True)
            if pg is not None:
                with contextlib.suppress(Exception):
                    pg.drop()

    text = table(result)
    print()
    print(text)
    print()
    for line in result["notes"]:
        print(f"  {line}")
    print(f"overall: {'PASS' if result['passed'] else 'FAIL'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.json}")
    return 0


# -- the report --------------------------------------------------------------------------------------


def analyse(**k: Any) -> dict[str, Any]:
    args, users, load, live, rows = k["args"], k["users"], k["load"], k["live"], k["rows"]
    notes: list[str] = []

    # Throughput: Crucible from the database (first run created → last run finished), raw per window.
    terminal = [r for r in rows if r["status"] in TERMINAL]
    span = None
    crucible_rpm = None
    if terminal:
        span = max(r["finished_at"] for r in terminal) - min(r["queued_at"] for r in rows)
        crucible_rpm = len(terminal) / span * 60 if span > 0 else None
    client_span = k["all_ended_at"] - (load.first_post_at or k["load_start"])
    client_rpm = len(terminal) / client_span * 60 if client_span > 0 else None
    raw = {}
    for kind, windows in k["raw_results"].items():
        rpm = [w["runs_per_min"] for w in windows]
        raw[kind] = {"windows": windows, "runs_per_min": round(sum(rpm) / len(rpm), 1)}
    ratio = crucible_rpm / raw["run"]["runs_per_min"] if crucible_rpm else 0.0
    # CPU per run, machine-wide: raw's, Crucible's under the load, and what the target leaves, as
    # the machine has os.cpu_count() seconds of CPU a second.
    raw_cpu = [w["machine_cpu_ms_per_run"] for w in raw["run"]["windows"] if w.get("machine_cpu_ms_per_run")]
    raw_cores = [w["busy_cores"] for w in raw["run"]["windows"] if "busy_cores" in w]
    cpu_per_run = {
        "raw_run_ms": round(sum(raw_cpu) / len(raw_cpu), 1) if raw_cpu else None,
        "raw_busy_cores": round(sum(raw_cores) / len(raw_cores), 2) if raw_cores else None,
        "crucible_ms": round(k["cpu_seconds"]["machine"] / len(terminal) * 1000, 1) if terminal else None,
        "at_target_ms": round(
            (os.cpu_count() or 1) * 60_000 / (TARGET_THROUGHPUT_RATIO * raw["run"]["runs_per_min"]), 1
        ),
    }
    ratio_delete = crucible_rpm / raw["run_delete"]["runs_per_min"] if crucible_rpm else 0.0

    # Runs.
    statuses = collections.Counter(r["status"] + (f"/{r['reason']}" if r["reason"] else "") for r in rows)
    not_terminal = [r["id"] for r in rows if r["status"] not in TERMINAL]
    wrong_output = []
    for r in rows:
        tag = r["name"].removeprefix("load ")
        if r["status"] == "succeeded" and (r["stdout_bytes"] != len(run_stdout(tag)) or r["stderr_bytes"]):
            wrong_output.append(r["id"])
        if r["id"] not in load.runs:
            notes.append(f"run {r['id']} is in the database but no client got its 201")
    started = [r for r in rows if r["started_at"] is not None]
    deliveries = collections.Counter(r["deliveries"] for r in rows)
    twice_deliveries = sum(c for d, c in deliveries.items() if d and d > 1)
    run_seconds = [r["finished_at"] - r["started_at"] for r in rows if r["started_at"] and r["finished_at"]]
    queue_seconds = [r["started_at"] - r["queued_at"] for r in rows if r["started_at"]]
    queue_ms, run_ms = pcts(queue_seconds), pcts(run_seconds)

    # Logs.
    log_dir = k["log_dir"]
    worker_log = scan_worker_log(log_dir / "worker.log")
    access = scan_access_log(log_dir / "web.log")
    logs = {name: scan_log(log_dir / f"{name}.log") for name in ("web", "worker", "reconciler")}
    reconciler_decisions = scan_reconciler_log(log_dir / "reconciler.log")
    if k["reconciler"] is None:
        logs.pop("reconciler")
    all_started = len(started) + sum(1 for r in k["warm_rows"] if r["started_at"] is not None)
    if worker_log["sandbox_started_lines"]:
        starts = worker_log["sandbox_started_lines"]
        starts_ok = starts == all_started and worker_log["sandbox_ids_distinct"] == starts
        starts_text = f"{starts} / {all_started}"
    else:
        starts_ok = None
        starts_text = "not logged"
        notes.append(
            "the worker log has no 'sandbox crucible-runsc-<hex> started' lines (the engine does not log "
            "them yet): runs are counted from the database only"
        )
    running_twice = sum(1 for c in live.list_running.values() if c > 1)  # "running" on the list socket
    once_ok = twice_deliveries == 0 and starts_ok is not False and running_twice == 0

    # HTTP.
    submit: collections.Counter[str] = collections.Counter()
    for u in users:
        submit.update(u.responses)
    client_5xx = [h for h in load.http if h[1] >= 500] + [s for s in k["read_samples"] if s[1] >= 500]
    reads = {kind: [s[2] for s in k["read_samples"] if s[0] == kind and s[1] == 200] for kind in ("detail", "list")}
    read_errors = [s for s in k["read_samples"] if s[1] != 200]
    read_stats = {kind: pcts(v) for kind, v in reads.items()}
    post_stats = {kind: pcts([h[2] for h in load.http if h[0] == kind]) for kind in ("submit_201", "submit_429")}
    read_ok = all(s["p99"] is not None and s["p99"] <= TARGET_READ_P99_MS for s in read_stats.values())

    # Quotas.
    qs = k["quota_sampler"]
    quota_ok = qs.violation_samples == 0 and qs.samples > 0 and qs.error is None
    quota_detail = {
        u.name: {"quota": u.concurrent_quota, "max_active_sampled": qs.max_active[u.user_id]} for u in users
    }
    at_quota = sum(1 for u in users if qs.max_active[u.user_id] == u.concurrent_quota)
    rejected = sum(c for key, c in submit.items() if key.startswith("429 concurrent"))

    # Followers.
    followed = live.followed
    followed_ok = sum(1 for f in followed if f["ok"])
    status_first = [f for f in followed if "late_output_bytes" in f]  # terminal status before all output
    status_first_late = sum(1 for f in status_first if f["late_output_bytes"])
    finished = {r["id"]: r["finished_at"] for r in rows}
    live_lag = [
        f["terminal_at"] - finished[f["id"]]
        for f in followed
        if f["ok"] and f["connected_at"] and finished.get(f["id"]) and f["connected_at"] < finished[f["id"]]
    ]
    list_ended = sum(len(u.ended) for u in users)
    list_missed = sorted(set(finished) - set().union(*(u.ended for u in users)))

    mem = k["memory"].report()
    cpu = k["cpu_seconds"]
    peak = mem["peak_rss_mib"]

    checks = {
        "throughput": {"ratio_min": TARGET_THROUGHPUT_RATIO, "passed": ratio >= TARGET_THROUGHPUT_RATIO},
        "read_p99": {"max_ms": TARGET_READ_P99_MS, "passed": read_ok},
        "all_submitted": {"passed": len(load.runs) == args.runs},
        "all_terminal": {"passed": k["all_ended"] and not not_terminal and len(rows) == args.runs},
        "none_twice": {"passed": once_ok},
        "output": {"passed": not wrong_output and statuses.get("succeeded", 0) == len(rows)},
        "quotas": {"passed": quota_ok},
        "no_5xx": {"passed": not client_5xx and not access["5xx_count"]},
        "followers": {"passed": followed_ok == len(followed) and not live.problems},
        "run_list_sockets": {"passed": not list_missed and live.list_terminal_duplicates == 0},
    }
    passed = all(c["passed"] for c in checks.values())

    def verdict(name: str) -> str:
        return "PASS" if checks[name]["passed"] else "FAIL"

    def ms(s: dict[str, Any]) -> str:
        return f"{s['p50']} / {s['p99']} ms (n={s['n']})" if s["n"] else "no samples"

    table_rows = [
        ("throughput: Crucible (first created → last finished)", f"{crucible_rpm or 0:.0f} runs/min", "", ""),
        (f"throughput: raw runsc run, c={args.concurrency} (before, after)",
         f"{raw['run']['runs_per_min']:.0f} runs/min ("
         + ", ".join(f"{w['runs_per_min']:.0f}" for w in raw["run"]["windows"]) + ")", "", ""),
        ("throughput: Crucible / raw runsc run", f"{ratio:.2f}", f"≥ {TARGET_THROUGHPUT_RATIO:g}",
         verdict("throughput")),
        (f"  raw runsc run + delete, c={args.concurrency} (before, after)",
         f"{raw['run_delete']['runs_per_min']:.0f} runs/min ("
         + ", ".join(f"{w['runs_per_min']:.0f}" for w in raw["run_delete"]["windows"]) + ")", "", ""),
        ("  Crucible / raw runsc run + delete", f"{ratio_delete:.2f}", "", ""),
        ("  machine CPU per run: raw runsc run (busy cores); Crucible",
         f"{cpu_per_run['raw_run_ms']} ms ({cpu_per_run['raw_busy_cores']} of {os.cpu_count()}); "
         f"{cpu_per_run['crucible_ms']} ms", "", ""),
        ("  machine CPU per run that the target leaves, all included", f"{cpu_per_run['at_target_ms']} ms", "", ""),
        ("  Crucible, client side (first POST → all ended)", f"{client_rpm or 0:.0f} runs/min", "", ""),
        ("  server: queued → started, p50 / p99", f"{queue_ms['p50']} / {queue_ms['p99']} ms", "", ""),
        ("  server: started → finished, p50 / p99", f"{run_ms['p50']} / {run_ms['p99']} ms", "", ""),
        ("API read: GET run detail, p50 / p99", ms(read_stats["detail"]), f"p99 ≤ {TARGET_READ_P99_MS:g} ms", ""),
        ("API read: GET run list, p50 / p99", ms(read_stats["list"]), f"p99 ≤ {TARGET_READ_P99_MS:g} ms",
         verdict("read_p99")),
        ("  POST submission → 201, p50 / p99", ms(post_stats["submit_201"]), "", ""),
        ("  POST submission → 429, p50 / p99", ms(post_stats["submit_429"]), "", ""),
        ("runs created / asked for", f"{len(load.runs)} / {args.runs}", "all", verdict("all_submitted")),
        ("runs terminal / created", f"{len(terminal)} / {len(rows)}", "all", verdict("all_terminal")),
        ("runs by status/reason", ", ".join(f"{s} {c}" for s, c in statuses.most_common()), "", ""),
        ("runs with the wrong output (DB byte counts)", f"{len(wrong_output)}", "0", verdict("output")),
        ("sandbox starts in the worker log / runs started (+ warm-up)", starts_text, "equal", ""),
        ("runs claimed twice (deliveries > 1; started twice)",
         f"{twice_deliveries}; {running_twice}", "0", verdict("none_twice")),
        ("runs whose task message came twice; skipped as not queued",
         f"{worker_log['runs_whose_message_came_more_than_once']}; {worker_log['deliveries_skipped_not_queued']}",
         "", ""),
        ("reconciler decisions",
         ", ".join(f"{a} {c}" for a, c in sorted(reconciler_decisions.items())) or "none", "", ""),
        ("POST answers: 201 / 429 concurrent runs / other",
         f"{submit['201']} / {rejected} / {sum(submit.values()) - submit['201'] - rejected}", "", ""),
        ("quota: samples with a user over their quota",
         f"{qs.violation_samples} of {qs.samples}", "0", verdict("quotas")),
        ("quota: users seen at their quota",
         f"{at_quota} of {len(users)} (max active {qs.max_active_total}, running {qs.max_running_total})", "", ""),
        ("5xx answers (client; daphne access log)", f"{len(client_5xx)}; {access['5xx_count']}", "0",
         verdict("no_5xx")),
        ("API reads that failed (not 200)", f"{len(read_errors)}", "", ""),
        ("followers: runs followed, right / all", f"{followed_ok} / {len(followed)} ({live.unfollowed} left)", "all",
         verdict("followers")),
        ("followers: terminal status before the output (output came later; never)",
         f"{len(status_first)} ({status_first_late}; {len(status_first) - status_first_late})", "0", ""),
        ("followers: finished_at → terminal status, p50 / p99",
         f"{pcts(live_lag)['p50']} / {pcts(live_lag)['p99']} ms (n={len(live_lag)})", "", ""),
        ("run-list sockets: runs seen ending / runs", f"{list_ended} / {len(rows)}", "all",
         verdict("run_list_sockets")),
        ("peak RSS: web (daphne)", f"{peak.get('web', 0):.0f} MiB", "", ""),
        ("peak RSS: worker, Celery processes", f"{peak.get('worker_python', 0):.0f} MiB", "", ""),
        ("peak RSS: worker tree with sandboxes", f"{peak.get('worker', 0):.0f} MiB", "", ""),
    ]  # fmt: skip
    if k["db_sessions"] is not None:
        http_requests = len(load.http) + len(k["read_samples"])
        table_rows.append(
            (
                "PostgreSQL sessions opened from the load's start (most at once)",
                f"{k['db_sessions']} ({qs.max_db_connections}) for {http_requests} HTTP requests"
                f" + {sum(live.handshakes.values())} websockets",
                "",
                "",
            )
        )
    if "reconciler" in peak:
        table_rows.append(("peak RSS: reconciler", f"{peak['reconciler']:.0f} MiB", "", ""))
    table_rows += [
        ("CPU during the load: web; worker Celery; sandboxes", f"{cpu.get('web', 0):.0f}; "
         f"{cpu.get('worker_python', 0):.0f}; {cpu.get('worker_sandboxes', 0):.0f} s", "", ""),
        ("CPU during the load: reconciler; load generator + reader",
         f"{cpu.get('reconciler', 0):.0f}; {cpu['load_generator'] + cpu['api_reader']:.0f} s",
         "", ""),
        ("CPU during the load: PostgreSQL; Redis (servers on this machine, if they are)",
         f"{cpu.get('postgres', float('nan')):.0f}; {cpu.get('redis', float('nan')):.0f} s", "", ""),
        ("CPU during the load: whole machine / elapsed",
         f"{cpu['machine']:.0f} s / {cpu['elapsed']:.0f} s", "", ""),
        ("log lines with errors/warnings (web; worker)",
         f"{logs['web'].get('problem_lines')}; {logs['worker'].get('problem_lines')}", "", ""),
    ]  # fmt: skip

    if not k["all_ended"]:
        notes.append(f"not terminal after the timeout: run ids {not_terminal[:30]}")
    waits = sum(u.waits_notified for u in users), sum(u.waits_timed_out for u in users)
    notes.append(
        f"after a concurrent-run 429 the users waited for a run-list message {waits[0]} times, "
        f"and gave up waiting after {args.retry_seconds:g}s {waits[1]} times"
    )
    if k["reconciler"] is None:
        notes.append("no `manage.py reconcile` command in this tree: no reconciler ran")
    elif k["reconciler"].exit_code_while_running is not None:
        notes.append(f"the reconciler exited during the load with {k['reconciler'].exit_code_while_running}")
    for name, scanned in logs.items():
        for text, count in scanned.get("problems", [])[:8]:
            notes.append(f"{name}.log x{count}: {text}")
    notes += [f"client: {p}" for p in load.problems[:10]]
    notes += [f"websocket: {p}" for p in live.problems[:10]]
    if access["5xx"]:
        notes.append(f"daphne 5xx: {access['5xx'][:10]}")
    if list_missed:
        notes.append(f"runs whose end no run-list socket reported: {list_missed[:20]}")
    if qs.violations:
        notes.append(f"quota violations (first): {qs.violations[:5]}")
    if qs.error:
        notes.append(f"quota sampler stopped: {qs.error}")

    info = k["info"]
    info["loadavg_at_end"] = loadavg()
    return {
        "date": k["started"].strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info,
        "loadavg": k["loadavgs"],
        "command": " ".join(["bench/load.py", *sys.argv[1:]]),
        "database": k["db_label"],
        "config": {
            "runs": args.runs,
            "users": args.users,
            "followers": args.followers,
            "worker_concurrency": args.concurrency,
            "web_processes": args.web_processes,
            "concurrent_quotas": [u.concurrent_quota for u in users],
            "wall_seconds": args.wall_seconds,
            "read_rate_per_s": args.read_rate,
            "raw_seconds_per_window": args.raw_seconds,
            "api_rate_limits": "off",
        },
        "throughput": {
            "crucible_runs_per_min": round(crucible_rpm or 0, 1),
            "crucible_span_seconds": round(span or 0, 2),
            "crucible_client_runs_per_min": round(client_rpm or 0, 1),
            "raw_runsc_run": raw["run"],
            "raw_runsc_run_delete": raw["run_delete"],
            "ratio_vs_raw_run": round(ratio, 3),
            "machine_cpu_per_run": cpu_per_run,
            "ratio_vs_raw_run_delete": round(ratio_delete, 3),
            "server_queue_ms": queue_ms,
            "server_run_ms": run_ms,
        },
        "api_read_ms": read_stats,
        "api_read_errors": read_errors[:50],
        "api_submit_ms": post_stats,
        "runs": {
            "asked": args.runs,
            "created": len(load.runs),
            "in_database": len(rows),
            "terminal": len(terminal),
            "by_status_reason": dict(statuses),
            "not_terminal_ids": not_terminal[:100],
            "wrong_output_ids": wrong_output[:100],
            "deliveries": {str(d): c for d, c in sorted(deliveries.items())},
            "started": len(started),
        },
        "worker_log": worker_log,
        "reconciler_decisions": reconciler_decisions,
        "submit_answers": dict(submit),
        "quotas": {
            "samples": quota_sampler_summary(qs),
            "per_user": quota_detail,
        },
        "client_5xx": client_5xx[:50],
        "daphne_access": access,
        "followers": {
            "followed": len(followed),
            "right": followed_ok,
            "left_unfollowed": live.unfollowed,
            "terminal_status_before_output": {
                "runs": [f["id"] for f in status_first],
                "output_came_later": status_first_late,
            },
            "finished_to_terminal_status_ms": pcts(live_lag),
            "handshakes": dict(live.handshakes),
            "problems": live.problems,
            "list_sockets": {
                "terminal_statuses": list_ended,
                "runs_never_seen_ending": list_missed[:100],
                "terminal_duplicates": live.list_terminal_duplicates,
                "runs_running_twice": sum(1 for c in live.list_running.values() if c > 1),
                "reconnects_after_start": live.list_reconnects,
            },
        },
        "memory": mem,
        "cpu_seconds_during_load": cpu,
        "postgresql_sessions_opened_from_load_start": k["db_sessions"],
        "logs": logs,
        "client_problems": load.problems,
        "checks": checks,
        "passed": passed,
        "notes": notes,
        "table_rows": table_rows,
    }


def quota_sampler_summary(qs: QuotaSampler) -> dict[str, Any]:
    return {
        "samples": qs.samples,
        "samples_over_quota": qs.violation_samples,
        "violations": qs.violations,
        "max_active_total": qs.max_active_total,
        "max_running_total": qs.max_running_total,
        "max_db_connections": qs.max_db_connections,
        "error": qs.error,
    }


def table(result: dict[str, Any]) -> str:
    return target_table([tuple(r) for r in result["table_rows"]])


if __name__ == "__main__":
    sys.exit(main())
