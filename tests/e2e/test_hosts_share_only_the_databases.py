"""Web and two workers as if on three hosts: each with a var dir of its own (and, each worker, a mount
namespace where the other two var dirs are empty tmpfs), sharing only PostgreSQL and Redis over TCP.
Runs spread over both workers stream live to a websocket client of the web, replay from offsets after
a reconnect, cancel, and show their metrics (issue 14)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from tests.faults.support import TERMINAL, Api, RunFollower, program
from tests.support.postgres_cluster import PostgresCluster
from tests.support.redis_server import RedisServer
from tests.support.stack import REPO_ROOT, VENV_BIN, Stack, child_env

pytestmark = pytest.mark.e2e

USERS_SCRIPT = """
from django.contrib.auth import get_user_model
from evaluations.accounts import tokens
from evaluations.models import QuotaOverride
user = get_user_model().objects.create_user(username="hosts", password=None)
QuotaOverride.objects.create(user=user, concurrent_runs=100, runs_per_day=100000)
print("TOKEN", tokens.token_create(user=user, name="hosts")[1])
"""
SENTINEL = "only-this-host-sees-me"
# Prints a numbered line every 20 ms for about 1.5 s (stdout and stderr), so a client joins mid-run.
STREAMING = "import sys, time\nfor i in range(75):\n    print(f'line {i:03d} ' + 'x' * 40, flush=True)\n" \
    "    print(f'err {i}', file=sys.stderr, flush=True)\n    time.sleep(0.02)\n"  # fmt: skip


def unshare_prefix(hidden: list[Path]) -> list[str]:
    """Run the worker in a mount namespace of its own where `hidden` dirs are empty tmpfs."""
    mounts = " && ".join(f'mount -t tmpfs -o size=1m tmpfs "${i + 1}"' for i in range(len(hidden)))
    script = f'{mounts} && shift {len(hidden)} && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *map(str, hidden)]


@pytest.fixture
def three_hosts(tmp_path):
    from django.conf import settings

    # Root runs runsc anyway, and unshare(1) is in util-linux, which every Debian has: fail loudly.
    assert os.geteuid() == 0 and shutil.which("unshare"), "needs root and unshare(1) for the mount namespaces"
    roots = {name: Path(tempfile.mkdtemp(prefix=f"crucible-{name}-var-")) for name in ("web", "w1", "w2")}
    for name, root in roots.items():
        (root / SENTINEL).write_text(name)
    with PostgresCluster() as pg, RedisServer(work_dir=tmp_path / "redis") as redis_server:
        pg.create_database("crucible")
        shared = {
            "DJANGO_SETTINGS_MODULE": "crucible_site.settings",
            "CRUCIBLE_TEST_SESSION_VAR_DIR": None,
            "CRUCIBLE_DATABASE_URL": pg.url("crucible"),
            "CRUCIBLE_REDIS_URL": redis_server.url(),
            "CRUCIBLE_SECRET_KEY": "hosts-test-" + "k" * 40,  # from the environment, the same on every host
            "CRUCIBLE_IMAGES_DIR": str(settings.CRUCIBLE_IMAGES_DIR),  # built from the same recipe everywhere
            "CRUCIBLE_SANDBOX_STATE_DIR": None,
            "CRUCIBLE_SANDBOX_ENGINE": "runsc",
            "CRUCIBLE_PRODUCTION": "0",
            "CRUCIBLE_DEBUG": "0",
            "CRUCIBLE_API_RATE": "off",
            "CRUCIBLE_API_WRITE_RATE": "off",
        }
        web_env = {**shared, "CRUCIBLE_VAR_DIR": str(roots["web"])}
        for argv in (["migrate", "--noinput", "-v0"], ["shell", "-c", USERS_SCRIPT]):
            done = subprocess.run(
                [str(VENV_BIN / "python"), "manage.py", *argv],
                cwd=REPO_ROOT,
                env=child_env(web_env),
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.returncode == 0, done.stderr
        token = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("TOKEN"))
        stack = Stack(shared, log_dir=tmp_path / "logs", workers=0, web_env=web_env, reconciler=False)
        try:
            stack.start()
            for name, other in (("w1", "w2"), ("w2", "w1")):
                stack.start_worker(
                    f"{name}@%h",
                    concurrency=1,  # one run at a time each: four runs must go to both
                    env={"CRUCIBLE_VAR_DIR": str(roots[name])},
                    prefix=unshare_prefix([roots["web"], roots[other]]),
                )
            yield stack, Api(stack.base_url, token), token, roots, pg
        finally:
            stack.stop()
            for root in roots.values():
                shutil.rmtree(root, ignore_errors=True)


def ws_frames(base_url: str, token: str, run_id: int, query: str, until) -> list[dict]:
    """Messages from /ws/runs/<id>/?<query> until `until(messages)` (or the run's end)."""
    from websockets.sync.client import connect

    messages: list[dict] = []
    url = base_url.replace("http", "ws", 1) + f"/ws/runs/{run_id}/?{query}"
    with connect(url, additional_headers={"Authorization": f"Token {token}"}, open_timeout=5) as ws:
        deadline = time.monotonic() + 30
        while not until(messages):
            messages.append(json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic()))))
            if messages[-1].get("type") == "status" and messages[-1]["status"] in TERMINAL:
                break
    return messages


def test_runs_on_two_worker_hosts_stream_replay_cancel_and_plot_through_the_databases(three_hosts) -> None:
    stack, api, token, roots, pg = three_hosts
    w1, w2 = stack.workers

    # Each worker sees its own var dir, and the other two as empty mounts.
    for proc, own in ((w1, "w1"), (w2, "w2")):
        for name, root in roots.items():
            seen = (Path(f"/proc/{proc.pid}/root") / str(root).lstrip("/") / SENTINEL).exists()
            assert seen == (name == own), f"worker {own} {'cannot see' if name == own else 'sees'} {name}'s var dir"

    codes = [program(STREAMING) for _ in range(4)]
    ids = [api.submit(code, wall=20) for code in codes]
    followers = [
        RunFollower(stack.base_url.replace("http", "ws", 1), token, run_id, timeout=60).start() for run_id in ids
    ]

    # Replay: a second client takes part of the first run's output, goes away, and comes back with its offsets.
    api.wait(ids[0], lambda run: len(run["stdout"]) > 500, timeout=30, what="no output yet")
    first = ws_frames(
        stack.base_url, token, ids[0], "stdout=0&stderr=0", lambda m: sum(x["type"] == "output" for x in m) >= 2
    )
    have = {"stdout": bytearray(), "stderr": bytearray()}
    for m in first:
        if m["type"] == "output":
            assert m["offset"] == len(have[m["stream"]])
            have[m["stream"]] += base64.b64decode(m["data"])
    query = f"stdout={len(have['stdout'])}&stderr={len(have['stderr'])}"
    rest = ws_frames(stack.base_url, token, ids[0], query, lambda m: False)
    for m in rest:
        if m["type"] == "output":
            assert m["offset"] == len(have[m["stream"]]), "a gap or a duplicate after the reconnect"
            have[m["stream"]] += base64.b64decode(m["data"])

    # Cancel a run that would print forever, on whichever worker took it.
    endless = api.submit(
        program("import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.05)\n"), wall=30
    )
    api.wait_output(endless, "tick")
    assert api.post(f"/api/v1/runs/{endless}/cancel/").status_code == 202
    cancelled = api.wait(endless, timeout=15)
    assert (cancelled["status"], cancelled["reason"]) == ("cancelled", "cancelled"), cancelled
    assert cancelled["stdout"].startswith("tick\n")

    runs = [api.wait(run_id, timeout=60) for run_id in ids]
    for follower in followers:
        follower.join(30)
    expected_out = "".join(f"line {i:03d} " + "x" * 40 + "\n" for i in range(75))
    expected_err = "".join(f"err {i}\n" for i in range(75))
    assert [r["status"] for r in runs] == ["succeeded"] * 4, (runs, stack.logs())
    with psycopg.connect(pg.dsn("crucible")) as conn:
        workers = conn.execute("SELECT worker FROM evaluations_run WHERE id = ANY(%s)", [ids]).fetchall()
    assert {w.split("@")[0] for (w,) in workers} == {"w1", "w2"}, f"one worker took every run: {workers}"
    for run, follower in zip(runs, followers, strict=True):
        assert not follower.problems, (follower.problems, follower.closes, stack.logs())
        assert follower.output["stdout"].decode() == expected_out == run["stdout"]
        assert follower.output["stderr"].decode() == expected_err == run["stderr"]
        assert "running" in follower.statuses  # it followed the run live, not only its end
        metrics = api.get(f"/api/v1/runs/{run['id']}/metrics/").json()["samples"]
        assert metrics and all(s["t"] > 0 for s in metrics), metrics
    assert have["stdout"].decode() == expected_out and have["stderr"].decode() == expected_err

    # Nothing a run produced went to any host's disk.
    for name, root in roots.items():
        stored = [p for p in root.rglob("*") if p.is_file() and b"line 000" in p.read_bytes()[: 1 << 20]]
        assert not stored, f"run output on {name}'s disk: {stored}"
    assert not api.server_errors
