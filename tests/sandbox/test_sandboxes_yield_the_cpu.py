"""Sandboxes weigh little for the CPU scheduler: on a busy host the web, the worker and the database
go first (EngineConfig.sandboxes_cpu_weight), and a sandbox still has the CPU when they idle."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from sandbox import cgroups
from sandbox.contract import ExecResult, Limits, Status
from tests.sandbox.conftest import EngineFactory
from tests.sandbox.support import make_request

pytestmark = pytest.mark.timeout(60)

SPIN = (
    "import time\n"
    "print('spinning', flush=True)\n"
    "end = time.monotonic() + {seconds}\n"
    "while time.monotonic() < end: pass\n"
)
HOST_SPIN_SECONDS = 2.0


def cpu_under(parent: str) -> float:
    """CPU seconds used so far by everything under the cgroup `parent`."""
    if cgroups.layout() == "v1":
        return int((cgroups.CGROUP_ROOT / "cpuacct" / parent / "cpuacct.usage").read_text()) / 1e9
    stat = (cgroups.CGROUP_ROOT / parent / "cpu.stat").read_text().split()
    return int(stat[stat.index("usage_usec") + 1]) / 1e6


def sandbox_cpu_while_the_host_is_busy(new_engine: EngineFactory, weight: int) -> float:
    """CPU seconds a spinning sandbox gets in the HOST_SPIN_SECONDS that one spinning host process per
    core shares the machine with it."""
    engine = new_engine(sandboxes_cpu_weight=weight)
    parent = engine.config.cgroup_parent
    request = make_request(SPIN.format(seconds=1 + HOST_SPIN_SECONDS + 1), limits=Limits(cpu_cores=2, wall_seconds=20))
    results: list[ExecResult] = []
    started = threading.Event()

    def on_output(stream, offset, chunk) -> None:
        started.set()

    sandboxed = threading.Thread(target=lambda: results.append(engine.execute(request, on_output=on_output)))
    sandboxed.start()
    assert started.wait(20), "the sandbox never started spinning"
    # Sessions of their own, as services have: with autogroup on, one session shares one weight.
    spin = SPIN.format(seconds=HOST_SPIN_SECONDS)
    hosts = [
        subprocess.Popen([sys.executable, "-c", spin], start_new_session=True, stdout=subprocess.PIPE) for _ in range(2)
    ]
    # Counted only while both host processes spin: their start-up on a busy machine is not theirs.
    for host in hosts:
        host.stdout.readline()
    before = cpu_under(parent)
    while all(host.poll() is None for host in hosts):
        time.sleep(0.01)
    during = cpu_under(parent) - before
    for host in hosts:
        host.wait()
        host.stdout.close()
    sandboxed.join()
    assert results and results[0].status is Status.SUCCEEDED, results
    return during


def test_a_busy_sandbox_leaves_the_cpu_to_the_hosts_busy_processes(new_engine: EngineFactory) -> None:
    light = sandbox_cpu_while_the_host_is_busy(new_engine, weight=10)
    as_a_process = sandbox_cpu_while_the_host_is_busy(new_engine, weight=100)

    # Against two spinning processes on two cores: a third of the machine at a process's weight,
    # and a tenth of that at a tenth of it.
    assert light < 0.35 * HOST_SPIN_SECONDS, f"{light:.2f} CPU-s at weight 10, {as_a_process:.2f} at 100"
    assert light < as_a_process / 2, f"{light:.2f} CPU-s at weight 10, {as_a_process:.2f} at 100"


def test_the_engines_sandboxes_share_one_weighed_parent(new_engine: EngineFactory) -> None:
    engine = new_engine(sandboxes_cpu_weight=7)

    assert engine.execute(make_request("print(1)")).status is Status.SUCCEEDED
    if cgroups.layout() == "v1":
        weight = int((cgroups.CGROUP_ROOT / "cpu" / engine.config.cgroup_parent / "cpu.shares").read_text())
        assert weight == round(7 * 1024 / 100)
    else:
        assert (cgroups.CGROUP_ROOT / engine.config.cgroup_parent / "cpu.weight").read_text().strip() == "7"


def test_a_weight_outside_the_schedulers_scale_is_refused(new_engine: EngineFactory) -> None:
    with pytest.raises(ValueError, match="sandboxes_cpu_weight"):
        new_engine(sandboxes_cpu_weight=0)
