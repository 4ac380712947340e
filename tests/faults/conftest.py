"""Fault tests: the real daphne, Celery workers and reconciler on a private Redis and a private
PostgreSQL, broken on purpose (killed, restarted, disk filled, errors injected); each test asserts
the end state a user sees, and `FaultEnv.check_end_state` that no request got a 5xx and every run
ended.

One PostgreSQL cluster per session (tests/support/postgres_cluster.py), migrated once into a
template database with the tests' users; each test gets a copy of it, a Redis of its own
(tests/support/redis_server.py), a var dir (sandbox state) and a web port. Leases, grace
periods and retries are shortened through the environment (FAULT_TIMINGS).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.faults.support import TERMINAL, Api, RunFollower, marker
from tests.support import sandboxes
from tests.support.postgres_cluster import PostgresCluster
from tests.support.redis_server import RedisServer
from tests.support.stack import REPO_ROOT, VENV_BIN, Process, Stack, child_env, free_port

LEASE_SECONDS = 4
RECONCILE_SECONDS = 1
STOP_GRACE_SECONDS = 3
FINAL_WRITE_RETRY_SECONDS = 3
FAULT_TIMINGS = {
    "CRUCIBLE_RUN_LEASE_SECONDS": str(LEASE_SECONDS),
    "CRUCIBLE_RECONCILE_SECONDS": str(RECONCILE_SECONDS),
    "CRUCIBLE_STOP_GRACE_SECONDS": str(STOP_GRACE_SECONDS),
    "CRUCIBLE_FINAL_WRITE_RETRY_SECONDS": str(FINAL_WRITE_RETRY_SECONDS),
}
TEMPLATE_DB = "crucible_faults_template"
RECONCILE_COMMAND = REPO_ROOT / "evaluations" / "management" / "commands" / "reconcile.py"
SANDBOX_STARTED = re.compile(r"sandbox (crucible-runsc-[0-9a-f]+) started")

# Users in the template database: `faults` may keep any number of runs in flight; `quota3` has the
# researcher role's quotas except 3 concurrent runs (a run stuck unfinished would lock it out).
USERS_SCRIPT = """
from django.contrib.auth import get_user_model
from evaluations.accounts import tokens
from evaluations.models import QuotaOverride
for name, concurrent in (("faults", 1000), ("quota3", 3)):
    user = get_user_model().objects.create_user(username=name, password=None)
    QuotaOverride.objects.create(user=user, concurrent_runs=concurrent, runs_per_day=100000)
    print("TOKEN", name, tokens.token_create(user=user, name="faults")[1])
"""

_serial = itertools.count(1)


def process_env(*, database_url: str, redis_url: str, var_dir: Path) -> dict[str, str | None]:
    """What every Crucible process of a fault test gets (laid over this process's environment)."""
    from django.conf import settings

    return {
        "DJANGO_SETTINGS_MODULE": "crucible_site.settings",  # not the pytest process's test_settings
        "CRUCIBLE_TEST_SESSION_VAR_DIR": None,  # test_settings would put every process in one var dir
        "CRUCIBLE_DATABASE_URL": database_url,
        "CRUCIBLE_REDIS_URL": redis_url,
        "CRUCIBLE_VAR_DIR": str(var_dir),
        "CRUCIBLE_IMAGES_DIR": str(settings.CRUCIBLE_IMAGES_DIR),  # the shared, already built image
        "CRUCIBLE_SANDBOX_STATE_DIR": None,
        "CRUCIBLE_SANDBOX_ENGINE": "runsc",
        "CRUCIBLE_PRODUCTION": "0",
        "CRUCIBLE_DEBUG": "0",
        "CRUCIBLE_API_RATE": "off",
        "CRUCIBLE_API_WRITE_RATE": "off",
        **FAULT_TIMINGS,
    }


def manage(env: Mapping[str, str | None], *args: str, timeout: float = 180) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", *args],
        cwd=REPO_ROOT,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"manage.py {args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


class Template:
    """The session's cluster and its migrated template database; `tokens`: username -> API key."""

    def __init__(self, cluster: PostgresCluster, tokens: dict[str, str]) -> None:
        self.cluster, self.tokens = cluster, tokens


@pytest.fixture(scope="session")
def fault_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    with PostgresCluster() as cluster:
        cluster.create_database(TEMPLATE_DB)
        env = process_env(
            database_url=cluster.url(TEMPLATE_DB),
            redis_url="redis://127.0.0.1:1/0",  # nothing here may need Redis
            var_dir=tmp_path_factory.mktemp("faults-template-var"),
        )
        manage(env, "migrate", "--noinput", "-v0")
        out = manage(env, "shell", "-c", USERS_SCRIPT)
        tokens = {name: key for _, name, key in (line.split() for line in out.splitlines() if line.startswith("TOKEN"))}
        yield Template(cluster, tokens)


class FaultEnv:
    """One test's Crucible: a database copied from the template, a Redis, a var dir, a web port;
    `stack()` starts the processes. Everything is undone at the end of the test, in reverse order."""

    def __init__(self, template: Template, tmp_path: Path, cleanup: contextlib.ExitStack) -> None:
        self.pg, self.tokens, self._cleanup = template.cluster, template.tokens, cleanup
        self.var_dir = tmp_path / "var"
        self.state_dir = self.var_dir / "sandboxes"
        self.log_dir = tmp_path / "logs"
        self.var_dir.mkdir()
        cleanup.callback(sandboxes.kill_all, self.state_dir)  # whatever a failed test left running

        self.db_name = f"faults_{os.getpid()}_{next(_serial)}"
        self.pg.create_database(self.db_name, template=TEMPLATE_DB)
        cleanup.callback(self._drop_database)
        self.redis = cleanup.enter_context(RedisServer(work_dir=tmp_path / "redis"))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = process_env(database_url=self.pg.url(self.db_name), redis_url=self.redis.url(), var_dir=self.var_dir)
        self._apis: list[Api] = []
        self._followers: list[RunFollower] = []
        self.api = self.api_for("faults")
        self.stacks: list[Stack] = []

    def api_for(self, username: str) -> Api:
        """The REST API as `username` (`faults` or `quota3`); its 5xx count in check_end_state."""
        api = Api(self.base_url, self.tokens[username])
        self._apis.append(api)
        return api

    def _drop_database(self) -> None:
        if not self.pg.running():  # a test that stopped it and failed before starting it again
            self.pg.start()
        self.pg.drop_database(self.db_name)

    def cleanup(self, callback, *args: Any) -> None:
        """Run `callback(*args)` at the end of the test, before anything set up earlier is undone."""
        self._cleanup.callback(callback, *args)

    # -- processes ---------------------------------------------------------------------------------

    def stack(self, *, workers: int = 1, concurrency: int = 1, reconciler: bool = True) -> Stack:
        """Start daphne, `workers` Celery workers and (once the command exists) the reconciler."""
        stack = Stack(
            self.env,
            log_dir=self.log_dir,
            port=self.port,
            workers=workers,
            concurrency=concurrency,
            worker_name=f"fault{next(_serial)}@%h",
            reconciler=reconciler and RECONCILE_COMMAND.exists(),
            stop_timeout=STOP_GRACE_SECONDS + 10,
        )
        self._cleanup.callback(stack.stop)
        stack.start()
        self.stacks.append(stack)
        return stack

    def sandbox_running(self, code: str, *, timeout: float = 30, known: set[str] = frozenset()) -> str:
        """The id of a running sandbox (other than `known` ones) whose code is `code` (a `program`)."""
        deadline = time.monotonic() + timeout
        while not (found := sandboxes.sandboxes_running_code(self.state_dir, marker(code)) - set(known)):
            assert time.monotonic() < deadline, f"no sandbox runs {marker(code)!r} after {timeout:g}s\n{self.logs()}"
            time.sleep(0.05)
        return found.pop()

    def pool_child_running(self, stack: Stack, sandbox_id: str) -> tuple[int, Process]:
        """(pid of the Celery pool child that started the sandbox, the worker it belongs to)."""
        top = sandboxes.launching_process(self.state_dir, sandbox_id)
        assert top is not None, f"sandbox {sandbox_id} has no process"
        workers = {w.pid: w for w in stack.live_workers()}
        pool_pid = sandboxes.ancestor_with_parent(top.pid, set(workers))
        assert pool_pid is not None, f"sandbox {sandbox_id} was not started by a worker of the stack ({top})"
        info = sandboxes.proc_info(pool_pid)
        assert info is not None
        return pool_pid, workers[info.ppid]

    def wait_no_leftovers(self, sandbox_id: str, deadline: float) -> None:
        """Wait until nothing of the sandbox is left; fail with what is left at `deadline` (monotonic)."""
        while left := sandboxes.leftovers(self.state_dir, sandbox_id):
            assert time.monotonic() < deadline, f"left behind by sandbox {sandbox_id}: {left}\n{self.logs()}"
            time.sleep(0.2)

    def follow(self, run_id: int, timeout: float = 60) -> RunFollower:
        """Follow the run over its websocket (in a thread); its 5xx count in check_end_state."""
        follower = RunFollower(self.base_url.replace("http", "ws", 1), self.tokens["faults"], run_id, timeout)
        self._followers.append(follower)
        return follower.start()

    def logs(self) -> str:
        return "\n".join(stack.logs() for stack in self.stacks[-1:])

    def sandbox_starts(self) -> list[str]:
        """Ids of the sandboxes every worker of this test logged as started (one line per launch)."""
        return [
            m for path in sorted(self.log_dir.glob("worker*.log")) for m in SANDBOX_STARTED.findall(path.read_text())
        ]

    # -- the database, read directly ------------------------------------------------------------------

    def sql(self, query: str, *params: Any) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.pg.dsn(self.db_name), autocommit=True, row_factory=dict_row) as conn:
            cur = conn.execute(query, params or None)
            return cur.fetchall() if cur.description else []

    def run_row(self, run_id: int) -> dict[str, Any]:
        return self.sql("SELECT * FROM evaluations_run WHERE id = %s", run_id)[0]

    # -- the end state every test asserts ------------------------------------------------------------

    def check_end_state(self) -> None:
        errors = [e for client in [*self._apis, *self._followers] for e in client.server_errors]
        assert not errors, "the web answered 5xx:\n" + "\n".join(errors) + f"\n{self.logs()}"
        unfinished = self.sql(
            "SELECT id, status, reason, detail, deliveries FROM evaluations_run WHERE NOT status = ANY(%s)",
            list(TERMINAL),
        )
        assert not unfinished, f"runs not terminal at the end: {unfinished}\n{self.logs()}"


@pytest.fixture
def faults(fault_template: Template, tmp_path: Path) -> Iterator[FaultEnv]:
    with contextlib.ExitStack() as cleanup:
        yield FaultEnv(fault_template, tmp_path, cleanup)
