"""A scrape adds up the metric files it may read: a process group of another user (a worker
running as root beside a web that does not, docs/deploy.md) is left out, and /metrics still answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SCRAPE = (
    "import django; django.setup()\n"
    "from evaluations.monitoring import metrics\n"
    "metrics.websocket_messages_dropped(metrics.DROPPED_IN_DELIVERY, 3)\n"
    "families = {f.name: f for f in metrics.RecordedCollector().collect()}\n"
    "dropped = families['crucible_websocket_messages_dropped'].samples\n"
    "print(sum(s.value for s in dropped if s.name.endswith('_total')))\n"
)


def test_a_scrape_leaves_out_the_groups_it_may_not_read(tmp_path: Path) -> None:
    # A live process's group (this test's), that the scraping process may not open.
    foreign = tmp_path / "metrics" / f"{socket.gethostname()}-{os.getpid()}"
    foreign.mkdir(parents=True)
    (foreign / "counter_1.db").write_bytes(b"")
    foreign.chmod(0o000)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "crucible_site.settings",
        "CRUCIBLE_VAR_DIR": str(tmp_path / "var"),
        "CRUCIBLE_METRICS_DIR": str(tmp_path / "metrics"),
    }
    # Root reads any directory; without these capabilities it is held to the mode like anyone else.
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    try:
        scraped = subprocess.run(
            [*drop, sys.executable, "-c", SCRAPE], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        foreign.chmod(0o700)

    assert scraped.returncode == 0, scraped.stderr
    assert float(scraped.stdout.strip().splitlines()[-1]) == 3.0
    assert (foreign / "counter_1.db").exists()
