#!/usr/bin/env python3
"""Does a long history slow a user down? The same requests by a user with --history past runs
and by a user with 60 (more than a page), on a site of --others users with some runs each, in
one fresh PostgreSQL database, measured in the same run.

    .venv/bin/python bench/history.py            # about 90 s; --history 100000 runs

The runs were queued over the last 60 days; retention (CRUCIBLE_RETENTION_DAYS, 30 by default)
has deleted the output of those older than that. Both users are researchers whose concurrent-run
quota is 0, so a submission counts every quota and is refused (429) without making a run. Each
request is made -n times in this process with Django's test client (the whole middleware chain,
no server); its row is the median and p95 of the wall time, and the database's share of it.
Writes bench/results/history.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
if Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve() and VENV_PYTHON.exists():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
sys.path.insert(0, str(REPO_ROOT))

from common import git_describe, loadavg, percentile, write_result  # noqa: E402
from load import DEFAULT_PG_URL, PostgresDatabase  # noqa: E402

# Above this many times the fresh user's median, a request is said to grow with history.
GROWS = 2.0
DAYS = 60


def make_user(name: str, history: int):
    """A researcher with `history` ended runs (at least 1), their token key, and their newest run's id."""
    from datetime import timedelta

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from evaluations.accounts import tokens
    from evaluations.models import QuotaOverride, Run, Submission

    user = get_user_model().objects.create_user(name)
    QuotaOverride.objects.create(user=user, concurrent_runs=0)
    key = tokens.token_create(user=user, name="history")[1]
    now, batch = timezone.now(), 10_000
    for start in range(0, history, batch):
        count = min(batch, history - start)
        subs = Submission.objects.bulk_create(
            Submission(owner=user, name=f"run {start + i}", code="print('hello')\n" * 5) for i in range(count)
        )
        Run.objects.bulk_create(
            Run(
                submission=sub,
                status="succeeded",
                reason="exit_code",
                exit_code=0,
                wall_seconds=10,
                memory_bytes=256 << 20,
                stdout_limit_bytes=1 << 20,
                stderr_limit_bytes=1 << 20,
                stdout_bytes=600,
                cpu_seconds=0.05,
            )
            for sub in subs
        )
    # queued_at is set on insert: spread the runs over the last DAYS days, oldest first.
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE evaluations_run r SET queued_at = %s - (%s - s.rank) * %s, started_at = %s - (%s - s.rank) * %s,"
            " finished_at = %s - (%s - s.rank) * %s"
            " FROM (SELECT r2.id, row_number() OVER (ORDER BY r2.id) AS rank FROM evaluations_run r2"
            "       JOIN evaluations_submission s2 ON s2.id = r2.submission_id WHERE s2.owner_id = %s) s"
            " WHERE r.id = s.id",
            [*(now, history, timedelta(days=DAYS) / max(history, 1)) * 3, user.pk],
        )
    Run.objects.filter(
        submission__owner=user,
        finished_at__lt=now - timedelta(days=settings.CRUCIBLE_RETENTION_DAYS),
        output_expired_at=None,
    ).update(output_expired_at=now)
    return user, key, Run.objects.filter(submission__owner=user).latest("id").pk


class QueryTimer:
    """Django's execute wrapper: the time and number of the database calls made while installed."""

    def __init__(self) -> None:
        self.seconds, self.count = 0.0, 0

    def __call__(self, execute, sql, params, many, context):
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - t
            self.count += 1


def measure(client, method: str, path: str, n: int, expect: int, **kwargs) -> dict:
    from django.db import connection

    walls, db, queries = [], [], 0
    for i in range(n + 2):  # two unmeasured
        timer = QueryTimer()
        with connection.execute_wrapper(timer):
            t = time.perf_counter()
            resp = getattr(client, method)(path, **kwargs)
            wall = time.perf_counter() - t
        if resp.status_code != expect:
            raise SystemExit(f"{method.upper()} {path}: {resp.status_code}, expected {expect}: {resp.content[:300]!r}")
        if i >= 2:
            walls.append(wall * 1000)
            db.append(timer.seconds * 1000)
            queries = timer.count
    return {
        "median_ms": round(percentile(walls, 50), 2),
        "p95_ms": round(percentile(walls, 95), 2),
        "db_median_ms": round(percentile(db, 50), 2),
        "queries": queries,
    }


def requests_of(key: str, newest: int) -> list[tuple[str, str, str, int, dict]]:
    api = {"HTTP_AUTHORIZATION": f"Token {key}"}
    body = {"data": {"code": "print(1)"}, "content_type": "application/json", **api}
    return [
        ("GET /api/v1/runs/ (first page)", "get", "/api/v1/runs/", 200, api),
        ("GET /api/v1/runs/<newest>/", "get", f"/api/v1/runs/{newest}/", 200, api),
        ("POST /api/v1/submissions/ → 429", "post", "/api/v1/submissions/", 429, body),
        ("GET /runs/ (page)", "get", "/runs/", 200, {}),
        ("GET /usage/ (page)", "get", "/usage/", 200, {}),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=100_000, help="past runs of the long-history user")
    parser.add_argument("--others", type=int, default=100, help="other users on the site (default 100)")
    parser.add_argument("--others-runs", type=int, default=500, help="past runs of each other user (default 500)")
    parser.add_argument("-n", type=int, default=30, help="times each request is made (default 30)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / "history.json")
    args = parser.parse_args()

    db = PostgresDatabase(args.pg_url)
    os.environ["CRUCIBLE_DATABASE_URL"] = db.url
    os.environ["DJANGO_SETTINGS_MODULE"] = "crucible_site.settings"
    os.environ.setdefault("CRUCIBLE_VAR_DIR", str(REPO_ROOT / "var"))
    try:
        import logging

        import django

        django.setup()
        logging.disable(logging.WARNING)  # the 429s' warnings
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client

        settings.ALLOWED_HOSTS = ["testserver"]
        call_command("migrate", verbosity=0)
        t = time.perf_counter()
        users = {"60 runs": make_user("fresh", 60), f"{args.history:,} runs": make_user("long", args.history)}
        for i in range(args.others):
            make_user(f"other{i}", args.others_runs)
        with connection.cursor() as cur:
            cur.execute("ANALYZE")
        made = args.history + 1 + args.others * args.others_runs
        print(f"database {db.name}: {made:,} runs made in {time.perf_counter() - t:.0f} s; load {loadavg()}")

        results: dict[str, dict[str, dict]] = {}
        for label, (user, key, newest) in users.items():
            client = Client()
            client.force_login(user)
            for name, method, path, expect, kwargs in requests_of(key, newest):
                results.setdefault(name, {})[label] = measure(client, method, path, args.n, expect, **kwargs)
    finally:
        from django.db import connections

        connections.close_all()
        db.drop()

    fresh, long = users
    print(f"\n{'ms, median (p95) [database]':44} {fresh:>26} {long:>26}   ratio")
    worst = 0.0
    for name, row in results.items():
        cells = [f"{r['median_ms']:.1f} ({r['p95_ms']:.1f}) [{r['db_median_ms']:.1f}]" for r in (row[fresh], row[long])]
        ratio = row[long]["median_ms"] / row[fresh]["median_ms"]
        worst = max(worst, ratio)
        row["ratio"] = round(ratio, 2)
        print(f"{name:44} {cells[0]:>26} {cells[-1]:>26}   {ratio:5.2f}{'  grows' if ratio > GROWS else ''}")
    verdict = "PASS" if worst <= GROWS else "FAIL"
    print(f"\nevery request within {GROWS:g}x of the fresh user's: {verdict} (worst {worst:.2f}x)")
    write_result(
        args.json,
        {"history": args.history, "n": args.n, "git": git_describe(), "loadavg_end": loadavg(), "requests": results},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
