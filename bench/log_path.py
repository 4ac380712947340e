#!/usr/bin/env python3
"""The log path's cost: a run printing its whole 1 MiB cap as fast as it can, against a baseline.

    .venv/bin/python bench/log_path.py             # about a minute; see bench/README.md

A real daphne + one Celery worker (tests/support/stack.py) on a private PostgreSQL cluster
(tests/support/postgres_cluster.py) and Redis. Each round submits, alternately:

  flood     prints lines of 100 bytes until the stdout cap (1 MiB) is full (`python3 -u`: one write
            per line, so the pump hands the worker many small chunks), while a websocket client
            follows the run;
  baseline  the same loop writing the same lines to /dev/null inside the sandbox (no output).

Per run it samples the CPU time (utime + stime from /proc, children's included once reaped) of the
Celery worker and its pool child (not runsc: that is the sandbox's), of PostgreSQL (the postmaster,
its live backends and the ones that exited), and of daphne. Extra CPU per MiB = flood − baseline.
It checks that the client received and the store holds exactly the cap. Prints a table, writes
bench/results/log_path.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"

if Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve() and VENV_PYTHON.exists():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])

sys.path.insert(0, str(REPO_ROOT))  # ahead of bench/: bench/sandbox.py must not shadow `sandbox`

import psycopg  # noqa: E402
from common import BenchError, add_stack_options, loadavg, machine_info, write_result  # noqa: E402

from sandbox.contract import MiB  # noqa: E402
from sandbox.engine import EngineConfig  # noqa: E402
from sandbox.runsc import RunscEngine  # noqa: E402
from tests.faults.support import Api, RunFollower  # noqa: E402
from tests.support.postgres_cluster import PostgresCluster  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.stack import REPO_ROOT as STACK_ROOT  # noqa: E402
from tests.support.stack import VENV_BIN, Stack, child_env  # noqa: E402

CAP = MiB  # CRUCIBLE_OUTPUT_LIMIT_BYTES's default
LINES = CAP // 100 + 1  # one more than fits: the run ends at the cap, as output_limit
FLOOD = "import sys\nline = 'x' * 99\nfor i in range({lines}):\n    print(line)\n"
BASELINE = (
    "import sys\nout = open('/dev/null', 'w')\nline = 'x' * 99\nfor i in range({lines}):\n    print(line, file=out)\n"
)
USERS_SCRIPT = (
    "from django.contrib.auth import get_user_model; from evaluations.accounts import tokens; "
    "u = get_user_model().objects.create_user('bench'); print('TOKEN', tokens.token_create(user=u, name='bench')[1])"
)
TICK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := proc_stat(int(entry.name))) and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def cpu_seconds(pid: int, *, reaped: bool) -> float:
    """utime + stime of `pid` (and of its children it has reaped, if `reaped`)."""
    fields = proc_stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if reaped else 0)
    return ticks / TICK


class CpuMeter:
    """CPU seconds used so far by the worker (main + pool children), PostgreSQL and daphne."""

    def __init__(self, stack: Stack, postmaster: int) -> None:
        self.worker = stack.worker.pid
        self.web = stack.web.pid
        self.postmaster = postmaster

    def read(self) -> dict[str, float]:
        pool = children(self.worker)
        return {
            "worker": cpu_seconds(self.worker, reaped=False) + sum(cpu_seconds(p, reaped=False) for p in pool),
            "database": cpu_seconds(self.postmaster, reaped=True)
            + sum(cpu_seconds(p, reaped=False) for p in children(self.postmaster)),
            "web": cpu_seconds(self.web, reaped=False),
        }


def one_run(api: Api, meter: CpuMeter, token: str, code: str, follow: bool) -> dict:
    time.sleep(1.0)  # let the last run's clean-up and the heartbeat settle
    before = meter.read()
    posted = time.monotonic()
    run_id = api.submit(code, wall=60)
    follower = (
        RunFollower(api.base_url.replace("http", "ws", 1), token, run_id, timeout=120).start() if follow else None
    )
    run = api.wait(run_id, timeout=120)
    ended = time.monotonic()
    if follower is not None:
        follower.join(30)
    time.sleep(0.5)  # the pool child's last writes and the database's checkpoint of them
    after = meter.read()
    stored = api.get(f"/api/v1/runs/{run_id}/logs/?stream=stdout&offset=0")
    return {
        "run_id": run_id,
        "status": f"{run['status']}/{run['reason']}",
        "seconds": round(ended - posted, 3),
        "cpu": {k: round(after[k] - before[k], 3) for k in after},
        "stored_bytes": len(stored.content),
        "received_bytes": len(follower.output["stdout"]) if follower else None,
        "client_problems": follower.problems if follower else [],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="flood/baseline pairs (default 5)")
    add_stack_options(parser, result="log_path.json", redis_url="")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: runsc and the Crucible worker need root", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="clog-"))
    started = dt.datetime.now(dt.UTC)
    engine = RunscEngine(EngineConfig(images_dir=args.images_dir, state_dir=work / "probe"))
    info = machine_info(engine.runtime_version(), engine.platform())
    floods, baselines = [], []
    try:
        with PostgresCluster() as pg, RedisServer(work_dir=work / "redis") as redis_server:
            pg.create_database("crucible")
            env = {
                "DJANGO_SETTINGS_MODULE": "crucible_site.settings",
                "CRUCIBLE_DATABASE_URL": pg.url("crucible"),
                "CRUCIBLE_REDIS_URL": redis_server.url(),
                "CRUCIBLE_VAR_DIR": str(work / "var"),
                "CRUCIBLE_IMAGES_DIR": str(args.images_dir),
                "CRUCIBLE_SANDBOX_STATE_DIR": None,
                "CRUCIBLE_SANDBOX_ENGINE": "runsc",
                "CRUCIBLE_LOG_LEVEL": "WARNING",
                "CRUCIBLE_API_RATE": "off",
                "CRUCIBLE_API_WRITE_RATE": "off",
            }
            out = ""
            for argv in (["migrate", "--noinput", "-v0"], ["shell", "-c", USERS_SCRIPT]):
                done = subprocess.run(
                    [str(VENV_BIN / "python"), "manage.py", *argv],
                    cwd=STACK_ROOT,
                    env=child_env(env),
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                if done.returncode != 0:
                    raise BenchError(f"manage.py {argv[0]}: {done.stderr[-2000:]}")
                out = done.stdout
            token = next(line.split()[1] for line in out.splitlines() if line.startswith("TOKEN"))
            with psycopg.connect(pg.dsn()) as conn:
                postmaster = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"
                ).fetchone()
            postmaster_pid = int(proc_stat(postmaster[0])[1])  # the checkpointer's parent
            with Stack(env, log_dir=work / "logs", concurrency=1) as stack:
                api = Api(stack.base_url, token)
                meter = CpuMeter(stack, postmaster_pid)
                for code in (FLOOD, BASELINE):  # warm the pool child, the image and the connections
                    api.wait(api.submit(code.format(lines=LINES), wall=60), timeout=120)
                for i in range(args.rounds):
                    print(f"round {i + 1}/{args.rounds} ...", flush=True)
                    floods.append(one_run(api, meter, token, FLOOD.format(lines=LINES), follow=True))
                    baselines.append(one_run(api, meter, token, BASELINE.format(lines=LINES), follow=False))
                if api.server_errors:
                    raise BenchError("; ".join(api.server_errors[:3]))
    except BenchError as exc:
        print(f"bench: measurement failed: {exc}", file=sys.stderr)
        return 1
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)

    def med(runs: list[dict], key: str) -> float:
        return round(statistics.median(r["cpu"][key] for r in runs), 3)

    extra = {k: round(med(floods, k) - med(baselines, k), 3) for k in ("worker", "database", "web")}
    complete = all(r["stored_bytes"] == CAP and r["received_bytes"] == CAP and not r["client_problems"] for r in floods)
    info["loadavg_at_end"] = loadavg()
    result = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info,
        "database": "postgresql (private cluster, fsync off)",
        "cap_bytes": CAP,
        "lines": LINES,
        "rounds": args.rounds,
        "complete": complete,
        "flood": floods,
        "baseline": baselines,
        "median_cpu_seconds": {
            "flood": {k: med(floods, k) for k in extra},
            "baseline": {k: med(baselines, k) for k in extra},
        },
        "extra_cpu_seconds_per_mib": extra,
        "flood_seconds_median": round(statistics.median(r["seconds"] for r in floods), 3),
        "baseline_seconds_median": round(statistics.median(r["seconds"] for r in baselines), 3),
    }
    rows = [
        ("", "flood (1 MiB out)", "baseline (none)", "extra per MiB"),
        *[
            (
                f"CPU s, {k}",
                f"{result['median_cpu_seconds']['flood'][k]:.3f}",
                f"{result['median_cpu_seconds']['baseline'][k]:.3f}",
                f"{extra[k]:.3f}",
            )
            for k in extra
        ],
        ("submit → end, s", f"{result['flood_seconds_median']:.3f}", f"{result['baseline_seconds_median']:.3f}", ""),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    statuses = sorted({r["status"] for r in floods})
    text += f"\n(medians of {args.rounds} rounds; flood runs ended {', '.join(statuses)}; "
    text += f"client and store got the whole cap every time: {'yes' if complete else 'NO'})"
    print(text)
    write_result(args.json, result)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
