#!/usr/bin/env python3
"""What one request costs the web process: daphne's CPU time per request of each kind, one at a
time on a quiet stack, against a bare ASGI app under the same daphne (the floor).

    .venv/bin/python bench/web_cost.py          # about a minute; -n requests of each kind

A fresh PostgreSQL database (or --sqlite) with one user who has 60 ended runs with a little output
each (made in the database: no worker runs, so nothing else takes CPU), and a second user whose
concurrent-run quota is 0. Each kind is requested -n times back to back over one keep-alive
connection; its row is daphne's CPU time (utime + stime from /proc) and the client's wall time,
divided by the count. Writes bench/results/web_cost.json.
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
if Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve() and VENV_PYTHON.exists():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
sys.path.insert(0, str(REPO_ROOT))

import requests  # noqa: E402
from common import BenchError, add_stack_options, git_describe, loadavg, write_result  # noqa: E402
from load import DEFAULT_PG_URL, PostgresDatabase, manage  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from tests.support.stack import Stack, free_port  # noqa: E402

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"
TICK = os.sysconf("SC_CLK_TCK")
RUNS = 60

# The site's users and runs, made in one `manage.py shell`.
MAKE_SITE = f"""
from django.contrib.auth import get_user_model
from django.utils import timezone
from evaluations.accounts import tokens
from evaluations.models import QuotaOverride, Run, Submission
from evaluations.runs.logstore import RunLogWriter
User = get_user_model()
owner, refused = User.objects.create_user("bench-owner"), User.objects.create_user("bench-refused")
QuotaOverride.objects.create(user=owner, concurrent_runs=100000, runs_per_day=100000)
QuotaOverride.objects.create(user=refused, concurrent_runs=0)
now = timezone.now()
for i in range({RUNS}):
    sub = Submission.objects.create(owner=owner, name=f"run {{i}}", code="print('hello')")
    run = Run.objects.create(submission=sub, status="succeeded", reason="exit_code", exit_code=0, wall_seconds=10,
        memory_bytes=256 << 20, stdout_limit_bytes=1 << 20, stderr_limit_bytes=1 << 20, started_at=now,
        finished_at=now, stdout_bytes=12, cpu_seconds=0.05, peak_memory_bytes=20 << 20)
    writer = RunLogWriter(run)
    writer.append("stdout", 0, b"hello world\\n")
    writer.close()
print("SITE", run.pk, tokens.token_create(user=owner, name="b")[1], tokens.token_create(user=refused, name="b")[1])
"""

# The floor: the cheapest ASGI answer daphne can give.
FLOOR_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def cpu_seconds(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def measure(pid: int, n: int, request) -> dict[str, float]:
    for _ in range(min(10, n)):  # warm: caches, the connection pool, code paths
        request()
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    for _ in range(n):
        request()
    return {
        "cpu_ms": round((cpu_seconds(pid) - cpu) * 1000 / n, 2),
        "wall_ms": round((time.perf_counter() - wall) * 1000 / n, 2),
    }


def expect(status: int):
    def check(resp: requests.Response) -> None:
        if resp.status_code != status:
            raise BenchError(f"{resp.request.method} {resp.url}: {resp.status_code}, not {status}: {resp.text[:300]}")

    return check


def floor(work: Path, n: int) -> dict[str, float]:
    (work / "floor_app.py").write_text(FLOOR_APP)
    port = free_port()
    proc = subprocess.Popen(
        [str(VENV_PYTHON), "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "floor_app:app"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        session = requests.Session()
        for _ in range(100):
            try:
                session.get(f"http://127.0.0.1:{port}/")
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        return measure(proc.pid, n, lambda: expect(200)(session.get(f"http://127.0.0.1:{port}/")))
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="requests of each kind (default 300)")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite database instead of PostgreSQL")
    parser.add_argument("--pg-url", default=os.environ.get("CRUCIBLE_BENCH_PG_URL", DEFAULT_PG_URL))
    add_stack_options(parser, result="web_cost.json", redis_url=DEFAULT_REDIS_URL)
    args = parser.parse_args()
    import redis

    work = Path(tempfile.mkdtemp(prefix="cweb-"))
    var_dir = work / "var"
    var_dir.mkdir()
    pg = None if args.sqlite else PostgresDatabase(args.pg_url)
    rows: dict[str, dict[str, float]] = {}
    try:
        redis.Redis.from_url(args.redis_url, socket_connect_timeout=2).flushdb()
        env = dict(os.environ)
        env.update(
            {
                "CRUCIBLE_VAR_DIR": str(var_dir),
                "CRUCIBLE_DATABASE_URL": pg.url if pg else f"sqlite:///{var_dir / 'crucible.sqlite3'}",
                "CRUCIBLE_REDIS_URL": args.redis_url,
                "CRUCIBLE_IMAGES_DIR": str(args.images_dir),
                # Every request is counted: the rate limits would answer 429 first.
                "CRUCIBLE_API_RATE": "off",
                "CRUCIBLE_API_WRITE_RATE": "off",
                "DJANGO_SETTINGS_MODULE": "crucible_site.settings",
            }
        )
        manage(env, "migrate", "--noinput", "-v0")
        site = [line for line in manage(env, "shell", "-c", MAKE_SITE).splitlines() if line.startswith("SITE ")]
        if not site:
            raise BenchError("manage.py shell made no site")
        _, run_id, owner_token, refused_token = site[0].split()
        print(f"load {loadavg()}; floor: a bare ASGI app under daphne ...", flush=True)
        rows["bare ASGI app under daphne (the floor)"] = floor(work, args.n)
        with Stack(env, log_dir=work / "logs", workers=0) as stack:
            assert stack.web is not None
            pid = stack.web.popen.pid
            owner, refused = requests.Session(), requests.Session()
            owner.headers["Authorization"] = f"Token {owner_token}"
            refused.headers["Authorization"] = f"Token {refused_token}"

            def follow() -> None:
                url = f"ws://{stack.host}:{stack.port}/ws/runs/{run_id}/"
                with connect(url, additional_headers={"Authorization": f"Token {owner_token}"}, proxy=None) as ws:
                    while json.loads(ws.recv(timeout=10)).get("status") != "succeeded":
                        pass

            kinds = {
                "GET /healthz": lambda: expect(200)(owner.get(stack.url("/healthz"))),
                "GET /api/v1/runs/ (a page of 50)": lambda: expect(200)(owner.get(stack.url("/api/v1/runs/"))),
                "GET /api/v1/runs/<id>/": lambda: expect(200)(owner.get(stack.url(f"/api/v1/runs/{run_id}/"))),
                "POST /api/v1/submissions/ → 429 (quota)": lambda: expect(429)(
                    refused.post(stack.url("/api/v1/submissions/"), json={"code": "print(1)"})
                ),
                "POST /api/v1/submissions/ → 201": lambda: expect(201)(
                    owner.post(stack.url("/api/v1/submissions/"), json={"code": "print(1)"})
                ),
                "websocket: open an ended run's socket, read to its end": follow,
            }
            for label, request in kinds.items():
                print(f"{label} ...", flush=True)
                rows[label] = measure(pid, args.n, request)
    finally:
        if pg is not None:
            pg.drop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    width = max(map(len, rows)) + 2
    print(f"\n{'':{width}}{'daphne CPU':>12}{'client wall':>13}   per request, n={args.n}")
    for label, row in rows.items():
        print(f"{label:{width}}{row['cpu_ms']:>9.2f} ms{row['wall_ms']:>10.2f} ms")
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git": git_describe(),
        "database": "sqlite" if args.sqlite else "postgresql",
        "n": args.n,
        "loadavg_at_end": loadavg(),
        "rows": rows,
    }
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
