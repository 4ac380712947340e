#!/usr/bin/env python3
"""Fair scheduling against first-in-first-out: how long one user's single run waits behind another
user's batch, and what the batch's throughput is, with each scheduler.

    .venv/bin/python bench/fair.py            # about 2 minutes; -n for another batch size

For each of CRUCIBLE_SCHEDULER=fifo and =fair, a fresh site and stack (daphne + a Celery worker with
2 slots + runsc, tests/support/stack.py, set up as bench/e2e_latency.py does): user A submits a
batch of N runs of `time.sleep(0.5)`; once two of them have finished, user B submits `print(1)`.
Reported: B's wait (its `queue_seconds`: queued → claimed), and A's throughput (N runs over the
time from the batch's submission until its last run ended, as the client saw it). Writes
bench/results/fair.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
if Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve() and VENV_PYTHON.exists():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
sys.path.insert(0, str(REPO_ROOT))

import requests  # noqa: E402
from common import BenchError, add_stack_options, git_describe, loadavg  # noqa: E402
from e2e_latency import manage, prepare_site  # noqa: E402

from tests.support.stack import Stack  # noqa: E402

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/10"  # its own: not make run's 0, the other benches' 12/13, the tests' 14
SLEEP = "import time\ntime.sleep(0.5)\n"
TERMINAL = {"succeeded", "failed", "cancelled", "error"}


def second_token(env: dict[str, str]) -> str:
    out = manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; from evaluations.accounts import tokens; "
        "u = get_user_model().objects.create_user('bench-b'); print(tokens.token_create(user=u, name='b')[1])",
    )
    return out.strip().splitlines()[-1]


def generous(env: dict[str, str]) -> None:
    # The researcher role's default concurrency would make A's batch wait on A's own quota.
    manage(
        env,
        "shell",
        "-c",
        "from evaluations.models import QuotaOverride; from django.contrib.auth import get_user_model; "
        "[QuotaOverride.objects.update_or_create(user=u, defaults={'concurrent_runs': 1000, 'runs_per_day': 100000}) "
        "for u in get_user_model().objects.all()]",
    )


def measure(stack: Stack, token_a: str, token_b: str, n: int) -> dict:
    a, b = requests.Session(), requests.Session()
    a.headers["Authorization"], b.headers["Authorization"] = f"Token {token_a}", f"Token {token_b}"
    warm = b.post(stack.url("/api/v1/submissions/"), json={"code": "print(0)"}, timeout=30).json()["id"]
    wait_run(b, stack, warm)
    started = time.monotonic()
    resp = a.post(
        stack.url("/api/v1/batches/"),
        json={"name": "flood", "code": SLEEP, "inputs": [{"label": str(i)} for i in range(n)]},
        timeout=60,
    )
    if resp.status_code != 201:
        raise BenchError(f"POST /api/v1/batches/: {resp.status_code} {resp.text[:500]}")
    batch_url = stack.url(f"/api/v1/batches/{resp.json()['id']}/")
    while a.get(batch_url, timeout=10).json()["counts"]["succeeded"] < 2:
        time.sleep(0.05)
    single = b.post(stack.url("/api/v1/submissions/"), json={"code": "print(1)"}, timeout=10).json()["id"]
    run = wait_run(b, stack, single, timeout=600)
    while not (batch := a.get(batch_url, timeout=10).json())["done"]:
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    return {
        "b_wait_seconds": run["queue_seconds"],
        "b_status": run["status"],
        "a_runs": n,
        "a_succeeded": batch["counts"]["succeeded"],
        "a_seconds": round(elapsed, 2),
        "a_runs_per_second": round(n / elapsed, 3),
        "a_median_run_seconds": batch["median_run_seconds"],
    }


def wait_run(session: requests.Session, stack: Stack, run_id: int, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        data = session.get(stack.url(f"/api/v1/runs/{run_id}/"), timeout=10).json()
        if data["status"] in TERMINAL:
            return data
        if time.monotonic() > deadline:
            raise BenchError(f"run {run_id} still {data['status']} after {timeout:g} s")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=60, help="runs in user A's batch (default 60)")
    add_stack_options(parser, result="fair.json", redis_url=DEFAULT_REDIS_URL)
    args = parser.parse_args()

    import redis

    if os.geteuid() != 0:
        print("bench: runsc and the Crucible worker need root", file=sys.stderr)
        return 2
    results: dict[str, dict] = {}
    load_start = loadavg()
    for scheduler in ("fifo", "fair"):
        work = Path(tempfile.mkdtemp(prefix="cfair-"))  # short: runsc's socket paths must stay < 108 bytes
        try:
            var_dir, state_dir = work / "var", work / "var" / "sandboxes"
            state_dir.mkdir(parents=True)
            redis.Redis.from_url(args.redis_url, socket_connect_timeout=2).flushdb()
            env, token_a = prepare_site(var_dir, args.images_dir, state_dir, args.redis_url)
            token_b = second_token(env)
            generous(env)
            env["CRUCIBLE_SCHEDULER"] = scheduler
            with Stack(env, log_dir=work / "stack-logs", concurrency=2) as stack:
                print(f"{scheduler}: stack up at {stack.base_url}; a batch of {args.n} ...", flush=True)
                results[scheduler] = measure(stack, token_a, token_b, args.n)
        except BenchError as exc:
            print(f"bench: measurement failed: {exc}", file=sys.stderr)
            return 1
        finally:
            if args.keep:
                print(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)

    print(f"\n{'scheduler':<10} {'B waited':>10} {'A runs/s':>10} {'A took':>10} {'A median run':>13}")
    for name, r in results.items():
        print(
            f"{name:<10} {r['b_wait_seconds']:>9.2f}s {r['a_runs_per_second']:>10.2f} {r['a_seconds']:>9.1f}s "
            f"{r['a_median_run_seconds']:>12.2f}s"
        )
    out = {
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "commit": git_describe(),
        "loadavg_at_start": load_start,
        "loadavg_at_end": loadavg(),
        "batch_runs": args.n,
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
