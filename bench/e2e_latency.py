#!/usr/bin/env python3
"""End-to-end latency of one tiny run: plain Python vs. a raw `runsc run` vs. all of Crucible.

    .venv/bin/python bench/e2e_latency.py            # 30 samples of each; see bench/README.md

(a) python3     `/usr/bin/python3 -c 'print(1)'` as a subprocess of this script.
(b) runsc       a raw foreground `runsc run` of the same program (/usr/bin/python3 -u main.py with
                print(1)) on Crucible's rootfs, with the OCI spec Crucible writes
                (sandbox.runsc.oci_spec), then `runsc delete --force`; both are timed.
(b') engine     the runsc engine's execute() of the same request in this process, with its pool of
                booted sandboxes (the default), and with the pool off (each run boots).
(c) crucible    POST /api/v1/submissions/ (token auth) to a real daphne + Celery worker
                (tests/support/stack.py) on a fresh SQLite database, then GET /api/v1/runs/<id>/
                every 10 ms until the status is terminal; timed from before the POST until the
                response showing the terminal status has arrived.
(d) first byte  POST as in (c), then the run's websocket (/ws/runs/<id>/, token header) until the
                first output byte arrives; timed from before the POST.

The three are measured round-robin (a, b, c, a, b, c, ...) after a few unmeasured warm-up rounds,
so drift in machine load hits all of them alike. The baseline is (b) from the same run: the later
target is median(c) / median(b) <= 1.0. The script prints PASS or FAIL for it and exits 0 either
way; it exits 1 only if a measurement itself failed (wrong output, a run that did not succeed).
Results go to bench/results/e2e_latency.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"

# Re-run under the project's venv when started with another interpreter (it has Django, requests).
if Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve() and VENV_PYTHON.exists():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])

sys.path.insert(0, str(REPO_ROOT))

import base64  # noqa: E402

import requests  # noqa: E402
from common import (  # noqa: E402
    PYTHON3,
    BenchError,
    add_stack_options,
    attempt,
    loadavg,
    machine_info,
    summary,
    summary_row,
    write_result,
)
from raw_runsc import RawRunsc  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from sandbox.contract import ExecRequest, Status  # noqa: E402
from sandbox.engine import EngineConfig, get_engine  # noqa: E402
from sandbox.runsc import RunscEngine  # noqa: E402
from tests.support.stack import Stack  # noqa: E402

CODE = "print(1)\n"
EXPECTED = b"1\n"
# Issue 15's targets: (c) at p50 <= 0.6 x (b) and at p99 <= 1.5 x (b); (d) at p50 <= 60 ms.
TARGET_RATIO = 0.6
TARGET_P99_RATIO = 1.5
TARGET_FIRST_BYTE_MS = 60.0
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"  # its own database: not `make run`'s 0, not the tests' 14


# -- (a) plain python3 -------------------------------------------------------------------------------


def sample_python() -> float:
    start = time.perf_counter()
    proc = subprocess.run([PYTHON3, "-c", CODE], capture_output=True)
    took = time.perf_counter() - start
    if proc.returncode != 0 or proc.stdout != EXPECTED:
        raise BenchError(f"python3 -c: exit {proc.returncode}, stdout {proc.stdout!r}, stderr {proc.stderr!r}")
    return took


# -- (c) Crucible end to end -------------------------------------------------------------------------


def manage(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [str(VENV_PYTHON), "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise BenchError(f"manage.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def prepare_site(var_dir: Path, images_dir: Path, state_dir: Path, redis_url: str) -> tuple[dict[str, str], str]:
    """A fresh SQLite database in var_dir, migrated, with one user and its API token."""
    env = dict(os.environ)
    env.update(
        {
            "CRUCIBLE_VAR_DIR": str(var_dir),
            "CRUCIBLE_DATABASE_URL": f"sqlite:///{var_dir / 'crucible.sqlite3'}",
            "CRUCIBLE_REDIS_URL": redis_url,
            "CRUCIBLE_IMAGES_DIR": str(images_dir),
            "CRUCIBLE_SANDBOX_STATE_DIR": str(state_dir),
            "CRUCIBLE_SANDBOX_ENGINE": "runsc",
            "CRUCIBLE_LOG_LEVEL": "WARNING",  # no per-task log lines in the measured path
            # The client polls every 10 ms: the API's rate limits would throttle the measurement.
            "CRUCIBLE_API_RATE": "off",
            "CRUCIBLE_API_WRITE_RATE": "off",
            "DJANGO_SETTINGS_MODULE": "crucible_site.settings",
        }
    )
    manage(env, "migrate", "--noinput", "-v0")
    token = (
        manage(
            env,
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; from evaluations.accounts import tokens; "
            "u = get_user_model().objects.create_user('bench'); print(tokens.token_create(user=u, name='bench')[1])",
        )
        .strip()
        .splitlines()[-1]
    )
    return env, token


class CrucibleClient:
    def __init__(self, stack: Stack, token: str, poll_seconds: float) -> None:
        self.stack = stack
        self.poll = poll_seconds
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {token}"
        self.server: list[dict[str, float]] = []

    def submit(self, preload: bool) -> requests.Response:
        body = {"name": "bench", "code": CODE, "preload": preload}
        return self.http.post(self.stack.url("/api/v1/submissions/"), json=body, timeout=10)

    def sample(self, timeout: float = 60.0, *, preload: bool = False) -> float:
        start = time.perf_counter()
        resp = self.submit(preload)
        posted = time.perf_counter() - start
        if resp.status_code != 201:
            raise BenchError(f"POST /api/v1/submissions/: {resp.status_code} {resp.text[:500]}")
        url = self.stack.url(f"/api/v1/runs/{resp.json()['id']}/")
        next_poll = time.perf_counter()
        while True:
            # A GET every 10 ms (from the start of the previous one), or right away if that took longer.
            next_poll += self.poll
            delay = next_poll - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            resp = self.http.get(url, timeout=10)
            if resp.status_code != 200:
                raise BenchError(f"GET {url}: {resp.status_code} {resp.text[:500]}")
            data = resp.json()
            if Status(data["status"]).is_terminal:
                took = time.perf_counter() - start
                seen_at = time.time()
                break
            if time.perf_counter() - start > timeout:
                raise BenchError(f"run still {data['status']} after {timeout:g}s\n{self.stack.logs()}")
        if data["status"] != "succeeded" or data["stdout"] != EXPECTED.decode():
            raise BenchError(f"run ended {data['status']}/{data['reason']}: {data['detail']} stdout={data['stdout']!r}")
        finished = dt.datetime.fromisoformat(data["finished_at"].replace("Z", "+00:00")).timestamp()
        if preload:
            return took  # the per-phase rows are the default path's
        self.server.append(
            {
                "post_seconds": posted,
                "queue_seconds": data["queue_seconds"],
                "run_seconds": data["run_seconds"],
                "seen_after_finish_seconds": seen_at - finished,  # the poll's lag (same host, same clock)
            }
        )
        return took

    def sample_first_byte(self, timeout: float = 60.0, *, preload: bool = False) -> float:
        start = time.perf_counter()
        resp = self.submit(preload)
        if resp.status_code != 201:
            raise BenchError(f"POST /api/v1/submissions/: {resp.status_code} {resp.text[:500]}")
        uri = f"ws://{self.stack.host}:{self.stack.port}/ws/runs/{resp.json()['id']}/"
        headers = {"Authorization": self.http.headers["Authorization"]}
        with connect(uri, additional_headers=headers, proxy=None, open_timeout=10) as ws:
            while True:
                message = json.loads(ws.recv(timeout=timeout))
                if message["type"] == "output" and message["stream"] == "stdout":
                    took = time.perf_counter() - start
                    if not EXPECTED.startswith(base64.b64decode(message["data"])[:1]):
                        raise BenchError(f"first output was {message!r}")
                    return took
                if message["type"] == "status" and Status(message["status"]).is_terminal:
                    raise BenchError(f"the run ended {message['status']} before any output")


def sample_engine(engine: RunscEngine, *, preload: bool = False) -> float:
    start = time.perf_counter()
    result = engine.execute(ExecRequest(files={"main.py": CODE.encode()}, preload=preload))
    took = time.perf_counter() - start
    if result.status is not Status.SUCCEEDED or result.stdout.data != EXPECTED:
        raise BenchError(f"engine: {result.status}/{result.reason}: {result.detail}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--samples", type=int, default=30, help="measured samples of each (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured rounds first (default 3)")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="GET interval for (c) (default 10 ms)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="CRUCIBLE_SANDBOX_STATE_DIR for the worker (default: sandboxes/ in the temporary var dir)",
    )
    add_stack_options(parser, result="e2e_latency.json", redis_url=DEFAULT_REDIS_URL)
    args = parser.parse_args()

    import redis

    if os.geteuid() != 0:
        print("bench: runsc and the Crucible worker need root", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="cbench-"))  # short: runsc's socket paths must stay < 108 bytes
    var_dir = work / "var"
    var_dir.mkdir()
    state_dir = args.state_dir or var_dir / "sandboxes"
    state_dir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    engines: list[RunscEngine] = []
    try:
        engine = RunscEngine(EngineConfig(images_dir=args.images_dir, state_dir=work / "unused"))
        engine.check_binary()
        config = EngineConfig(images_dir=args.images_dir, state_dir=work / "engine", cgroup_parent="crucible-bench-e2e")
        pooled = get_engine("runsc", config)
        unpooled = get_engine("runsc", EngineConfig(**{**config.__dict__, "pool_size": 0}))
        assert isinstance(pooled, RunscEngine) and isinstance(unpooled, RunscEngine)
        engines = [pooled, unpooled]
        for preload in (False, True):
            pooled.prepare(ExecRequest(files={"main.py": CODE.encode()}, preload=preload))
        raw = RawRunsc(engine, work / "raw", CODE, EXPECTED)
        info = machine_info(engine.runtime_version(), engine.platform())
        print(
            f"machine: {info['cpus']} CPUs, {info['os']}, kernel {info['kernel']}, {info['runsc']} "
            f"({info['runsc_platform']}), load {info['loadavg_at_start']}",
            flush=True,
        )

        redis.Redis.from_url(args.redis_url, socket_connect_timeout=2).flushdb()
        env, token = prepare_site(var_dir, args.images_dir, state_dir, args.redis_url)
        t0 = time.perf_counter()
        with Stack(env, log_dir=var_dir / "logs", concurrency=2) as stack:
            print(
                f"stack up in {time.perf_counter() - t0:.1f}s at {stack.base_url} (logs: {stack.log_dir})", flush=True
            )
            client = CrucibleClient(stack, token, args.poll_ms / 1000)
            failures: list[dict[str, str]] = []
            names = ["python3", "runsc", "runsc_run_only", "engine_preloaded", "engine_pooled", "engine_unpooled"]
            names += ["crucible", "crucible_preloaded"]
            firsts = ["first_byte", "first_byte_preloaded"]
            samples: dict[str, list[float]] = {k: [] for k in [*names, *firsts]}
            for i in range(args.warmup + args.samples):
                a = attempt("python3", sample_python, failures)
                b, b_run = attempt("runsc", raw.sample, failures)
                e_pre = attempt("engine, preloaded", lambda: sample_engine(pooled, preload=True), failures)
                e_pooled = attempt("engine, pool on", lambda: sample_engine(pooled), failures)
                e_unpooled = attempt("engine, pool off", lambda: sample_engine(unpooled), failures)
                c = attempt("crucible", client.sample, failures)
                c_pre = attempt("crucible, preload", lambda: client.sample(preload=True), failures)
                d = attempt("first byte", client.sample_first_byte, failures)
                d_pre = attempt("first byte, preload", lambda: client.sample_first_byte(preload=True), failures)
                if i < args.warmup:
                    client.server.pop()
                    continue
                values = [a, b, b_run, e_pre, e_pooled, e_unpooled, c, c_pre, d, d_pre]
                for name, value in zip([*names, *firsts], values, strict=True):
                    samples[name].append(value)
                done = i - args.warmup + 1
                if done % 10 == 0 or done == args.samples:
                    print(f"  {done}/{args.samples}", flush=True)
            server = {k: summary([s[k] for s in client.server]) for k in client.server[0]}
    except BenchError as exc:
        print(f"bench: measurement failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for eng in engines:
            eng.close()
            eng.sweep()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    info["loadavg_at_end"] = loadavg()
    stats = {name: summary(values) for name, values in samples.items()}
    ratio = stats["crucible"]["median_ms"] / stats["runsc"]["median_ms"]
    p99_ratio = stats["crucible"]["p99_ms"] / stats["runsc"]["median_ms"]
    first_byte_ms = stats["first_byte"]["median_ms"]
    passed = ratio <= TARGET_RATIO
    p99_passed = p99_ratio <= TARGET_P99_RATIO
    first_byte_passed = first_byte_ms <= TARGET_FIRST_BYTE_MS

    rows = [
        ("(a) python3 -c 'print(1)'", stats["python3"]),
        ("(b) runsc run + delete  [baseline]", stats["runsc"]),
        ("    runsc run only", stats["runsc_run_only"]),
        ("(b') engine execute(), pool on, preloaded", stats["engine_preloaded"]),
        ("     engine execute(), pool on", stats["engine_pooled"]),
        ("     engine execute(), pool off", stats["engine_unpooled"]),
        ("(c) Crucible REST, submit → terminal", stats["crucible"]),
        ("    client: POST → 201", server["post_seconds"]),
        ("    server: queued → started (claim)", server["queue_seconds"]),
        ("    server: started → finished (sandbox, result)", server["run_seconds"]),
        ("    client: finished → seen by a poll", server["seen_after_finish_seconds"]),
        ('(c\') the same, submitted with "preload": true', stats["crucible_preloaded"]),
        ("(d) Crucible, submit → first byte on a websocket", stats["first_byte"]),
        ('(d\') the same, submitted with "preload": true', stats["first_byte_preloaded"]),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'':{width}}  {'min':>9} {'median':>9} {'p95':>9} {'p99':>9}   (ms, n={args.samples})")
    for label, s in rows:
        print(f"{summary_row(label, s, width)} {s.get('p99_ms', float('nan')):9.1f}")
    print()
    print(
        f"(c)/(b) at the median: {ratio:.2f}   (c) - (b) at the median: "
        f"{stats['crucible']['median_ms'] - stats['runsc']['median_ms']:.0f} ms"
    )
    print(f"target (c)/(b) <= {TARGET_RATIO:g} at the median: {'PASS' if passed else 'FAIL'}")
    print(f"target (c) p99 / (b) median <= {TARGET_P99_RATIO:g}: {p99_ratio:.2f} {'PASS' if p99_passed else 'FAIL'}")
    print(
        f"target (d) <= {TARGET_FIRST_BYTE_MS:g} ms at the median: {first_byte_ms:.0f} ms "
        f"{'PASS' if first_byte_passed else 'FAIL'}"
    )
    pre_ratio = stats["crucible_preloaded"]["median_ms"] / stats["runsc"]["median_ms"]
    print(
        f"with \"preload\": true: (c')/(b) {pre_ratio:.2f}, p99(c')/(b) "
        f"{stats['crucible_preloaded']['p99_ms'] / stats['runsc']['median_ms']:.2f}, "
        f"(d') {stats['first_byte_preloaded']['median_ms']:.0f} ms"
    )
    if failures:
        print(f"note: {len(failures)} sample(s) failed and were retried; see failed_samples_retried in the JSON")

    result = {
        "date": started.isoformat(timespec="seconds"),
        "machine": info,
        "samples": args.samples,
        "warmup_rounds": args.warmup,
        "poll_ms": args.poll_ms,
        "database": "sqlite (fresh, WAL)",
        "code": CODE,
        "stats_ms": stats,
        "crucible_server_side_ms": server,
        "ratio_c_over_b_median": round(ratio, 3),
        "failed_samples_retried": failures,
        "target": {
            "ratio_max": TARGET_RATIO,
            "passed": passed,
            "p99_ratio": round(p99_ratio, 3),
            "p99_ratio_max": TARGET_P99_RATIO,
            "p99_passed": p99_passed,
            "first_byte_median_ms": first_byte_ms,
            "first_byte_max_ms": TARGET_FIRST_BYTE_MS,
            "first_byte_passed": first_byte_passed,
        },
        "raw_seconds": {k: [round(v, 6) for v in vals] for k, vals in samples.items()},
    }
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
