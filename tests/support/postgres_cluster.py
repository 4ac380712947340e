"""A private PostgreSQL cluster for tests that stop, restart or break the database on purpose.

    with PostgresCluster() as pg:            # initdb into a temp dir, pg_ctl start on a free port
        pg.create_database("crucible")
        url = pg.url("crucible")             # postgres://postgres@127.0.0.1:<port>/crucible
        pg.stop()                            # pg_ctl stop -m fast: every connection is cut
        pg.start()

PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` OS user (Debian's
package makes it), else to the calling user. It listens on 127.0.0.1 only (no Unix socket), with
durability off (fsync, synchronous_commit): a test cluster is thrown away, never recovered.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.stack import free_port, log_tail

SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "''",  # none: TCP only (pg_ctl passes the options through a shell)
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class PostgresError(RuntimeError):
    """The cluster could not be made or started; the message carries the server log's tail."""


def postgres_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin with initdb (Debian's layout), else PATH's."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise PostgresError(
        "no PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin: "
        "`apt-get install postgresql` (scripts/lib.sh ensure_system does it for `make test`)"
    )


class PostgresCluster:
    def __init__(self, *, port: int | None = None, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or postgres_bin_dir()
        self.port = port or free_port()
        self.os_user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        # Not under pytest's 0700 temp root: the postgres user must reach its data directory.
        self.root = Path(tempfile.mkdtemp(prefix="crucible-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "server.log"
        self._initialized = False

    # -- addresses ---------------------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname} connect_timeout=3"

    # -- life cycle --------------------------------------------------------------------------------

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    def _run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        as_user = {"user": self.os_user, "group": pwd.getpwnam(self.os_user).pw_gid} if os.geteuid() == 0 else {}
        return subprocess.run(
            argv,
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "TZ": "UTC"},
            capture_output=True,
            text=True,
            timeout=timeout,
            **as_user,
        )

    def _init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, user=self.os_user)
        done = self._run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
        )  # fmt: skip
        if done.returncode != 0:
            raise PostgresError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        self._initialized = True

    def start(self, timeout: float = 30) -> None:
        if not self._initialized:
            self._init()
        options = " ".join(f"-c {key}={value}" for key, value in SERVER_SETTINGS.items())
        done = self._run(
            [str(self.bin_dir / "pg_ctl"), "start", "-w", "-t", str(int(timeout)), "-D", str(self.data_dir),
             "-l", str(self.log_path), "-o", f"-p {self.port} {options}"],
            timeout=timeout + 10,
        )  # fmt: skip
        if done.returncode != 0:
            raise PostgresError(
                f"pg_ctl start failed ({done.returncode}): {done.stdout}{done.stderr}\n{log_tail(self.log_path)}"
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn(), autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresError(f"PostgreSQL did not answer: {exc}\n{log_tail(self.log_path)}") from exc
                time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop -m <mode>: `fast` cuts every client's connection and stops at once."""
        done = self._run([str(self.bin_dir / "pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.data_dir)])
        if done.returncode != 0 and "Is server running?" not in done.stderr:
            raise PostgresError(f"pg_ctl stop failed ({done.returncode}): {done.stdout}{done.stderr}")

    def running(self) -> bool:
        if not self._initialized:
            return False
        return self._run([str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir)]).returncode == 0

    def destroy(self) -> None:
        """Stop (immediately) and delete the cluster."""
        with contextlib.suppress(Exception):
            if self.running():
                self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ---------------------------------------------------------------------------------

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str, template: str | None = None) -> str:
        """CREATE DATABASE (a copy of `template` if given: it must have no connections); its URL."""
        copy = f" TEMPLATE {template}" if template else ""
        self.execute(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
