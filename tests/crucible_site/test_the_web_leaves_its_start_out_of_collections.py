"""The web process freezes what it loads at start (crucible_site/asgi.py): a full collection of
the garbage collector walked all of it, pausing every request of the process for 100-170 ms."""

from __future__ import annotations

import subprocess
import sys

from tests.support.stack import REPO_ROOT, child_env

MEASURE = """
import gc
import crucible_site.asgi
from django.urls import get_resolver
get_resolver().resolve("/api/v1/runs/")  # what a first request loads is loaded already
print(gc.get_freeze_count(), len(gc.get_objects()))  # frozen; what a full collection walks
"""


def test_a_full_collection_in_the_web_process_does_not_walk_what_it_loaded_at_start(tmp_path):
    env = child_env({"CRUCIBLE_VAR_DIR": tmp_path / "var"})
    out = subprocess.run(
        [sys.executable, "-c", MEASURE], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    frozen, walked = map(int, out.stdout.split())
    assert frozen > 100_000  # Django, DRF, Channels and the views: ~145,000 objects here
    assert walked < frozen / 20
