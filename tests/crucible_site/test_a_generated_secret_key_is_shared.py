"""The secret key made on a fresh var dir: processes started together (web, workers) agree on it."""

from __future__ import annotations

import multiprocessing
import stat
import subprocess
import sys
from pathlib import Path

from crucible_site.env import generated_secret
from tests.support.stack import REPO_ROOT, child_env


def _read_after(barrier, path: Path, results) -> None:
    barrier.wait()
    try:
        results.put(generated_secret(path))
    except Exception as exc:  # a half-made file reads as an error in some process
        results.put(f"error: {exc!r}")


def test_processes_racing_on_an_empty_var_dir_agree_on_the_key(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for attempt in range(40):
        path = tmp_path / f"var-{attempt}" / "secret_key"
        path.parent.mkdir()
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_read_after, args=(barrier, path, results)) for _ in range(6)]
        for proc in procs:
            proc.start()
        keys = [results.get(timeout=30) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
        assert len(set(keys)) == 1 and keys[0], f"attempt {attempt}: {keys}"
        assert keys[0] == path.read_text().strip()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p.name for p in path.parent.iterdir()] == ["secret_key"]  # nothing half-made beside it


def test_a_web_and_a_worker_started_together_read_the_same_key_from_settings(tmp_path):
    env = child_env({"CRUCIBLE_VAR_DIR": str(tmp_path), "CRUCIBLE_SECRET_KEY": None, "CRUCIBLE_SECRET_KEY_FILE": None})
    env["DJANGO_SETTINGS_MODULE"] = "crucible_site.settings"
    read_key = "from django.conf import settings; print(settings.SECRET_KEY)"
    procs = [
        subprocess.Popen([sys.executable, "-c", read_key], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    keys = [proc.communicate(timeout=60)[0].strip() for proc in procs]
    assert keys[0] and keys == [keys[0], keys[0]] == [(tmp_path / "secret_key").read_text().strip()] * 2


def test_an_existing_key_file_is_kept(tmp_path):
    (tmp_path / "secret_key").write_text("kept-key\n")
    assert generated_secret(tmp_path / "secret_key") == "kept-key"
