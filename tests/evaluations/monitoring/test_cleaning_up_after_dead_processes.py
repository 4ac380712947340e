"""Process groups keep their metric files in directories of their own: a new process removes the
directories of dead groups on its host (never a live one's), and a scrape forgets the live gauges
of processes that died, even by SIGKILL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from evaluations.monitoring import metrics

REPO = Path(__file__).resolve().parents[3]
START = "import django, os; django.setup(); import evaluations.monitoring.metrics; print(os.getpid())"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_new_process_removes_dead_groups_directories_and_keeps_live_ones(tmp_path) -> None:
    host = socket.gethostname()
    dead, other_host = tmp_path / f"{host}-{_dead_pid()}", tmp_path / f"elsewhere-{_dead_pid()}"
    live_process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    live = tmp_path / f"{host}-{live_process.pid}"
    try:
        for group in (dead, live, other_host):
            group.mkdir()
            (group / "counter_1.db").write_bytes(b"")
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "crucible_site.settings",
            "CRUCIBLE_VAR_DIR": str(tmp_path / "var"),
            "CRUCIBLE_METRICS_DIR": str(tmp_path),
        }
        started = subprocess.run(
            [sys.executable, "-c", START], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True
        )
    finally:
        live_process.kill()
        live_process.wait()

    assert not dead.exists()
    assert (live / "counter_1.db").exists()
    assert other_host.exists()  # another host's pids mean nothing here
    assert (tmp_path / f"{host}-{started.stdout.strip()}").is_dir()


def test_a_scrape_forgets_the_live_gauges_of_dead_processes(tmp_path, settings) -> None:
    settings.CRUCIBLE_METRICS_DIR = tmp_path
    group = tmp_path / f"{socket.gethostname()}-{os.getpid()}"
    group.mkdir()
    mine = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]) / f"gauge_livesum_{os.getpid()}.db"
    metrics.WEBSOCKETS_OPEN.labels(route="test_dead").inc()  # makes `mine` if it was not there
    dead = group / f"gauge_livesum_{_dead_pid()}.db"
    dead.write_bytes(mine.read_bytes())
    alive = group / f"gauge_livesum_{os.getpid()}.db"
    alive.write_bytes(mine.read_bytes())
    metrics.WEBSOCKETS_OPEN.labels(route="test_dead").dec()

    list(metrics.RecordedCollector().collect())

    assert not dead.exists()
    assert alive.exists()
