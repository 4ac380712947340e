"""`crucible batch` against the real stack: a batch over inputs × configurations followed to its end,
its results, and a re-run of its failed runs; the exit code says whether every run succeeded."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_batch_over_inputs_and_configurations_reports_its_runs(cli, program):
    path = program("import sys\nprint(sys.argv[1:], input())\nsys.exit(1 if 'fail' in sys.argv else 0)\n")
    stdin = program("from a file\n", name="stdin.txt")
    default_stdin = program("default\n", name="default.txt")

    followed = cli(
        "batch", "submit", path, "--stdin", default_stdin,
        "--input", "ok", "--input", "fail 'two words'", "--input-stdin", stdin,
        "--wall", "5", "--wall", "10", "--follow",
    )  # fmt: skip
    batch_id = re.search(r"batch (\d+): 6 runs queued", followed.stderr).group(1)
    results = json.loads(cli("batch", "results", batch_id, "--format", "json").stdout)
    table = list(csv.DictReader(io.StringIO(cli("batch", "results", batch_id).stdout)))
    rerun = cli("batch", "rerun-failed", batch_id, "--follow")

    assert followed.returncode == 8, followed.stderr  # two runs (one input, two limits) failed
    assert re.search(r"batch \d+ done: 6/6 ended \(4 succeeded, 2 failed\)", followed.stderr), followed.stderr
    assert sorted((row["status"], row["wall_seconds"]) for row in results) == [
        ("failed", 5.0), ("failed", 10.0), ("succeeded", 5.0), ("succeeded", 5.0), ("succeeded", 10.0),
        ("succeeded", 10.0),
    ]  # fmt: skip
    assert {row["run_id"] for row in table} == {str(row["run_id"]) for row in results}
    outputs = {cli("logs", str(row["run_id"])).stdout for row in results}
    assert outputs == {"['ok'] default\n", "['fail', 'two words'] default\n", "[] from a file\n"}
    assert rerun.returncode == 8, rerun.stderr
    assert re.search(r"batch \d+ done: 2/2 ended \(2 failed\)", rerun.stderr), rerun.stderr


def test_a_batch_of_runs_that_all_succeed_exits_0(cli, program):
    inputs = program(json.dumps([{"argv": ["1"]}, {"argv": ["2"]}]), name="inputs.json")

    done = cli("batch", "submit", program("print('ok')\n"), "--inputs", inputs, "--follow", "--json")

    assert done.returncode == 0, done.stderr
    batch = json.loads(done.stdout)
    assert batch["done"] and batch["counts"]["succeeded"] == batch["total"] == 2
