"""runsc-specific tests: its sweep of dead workers' leftovers, state dirs, cgroups, availability.

What every engine must do is in test_conformance.py, which runs against runsc too.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox import cgroups, process_count
from sandbox import runsc as runsc_module
from sandbox.contract import ExecResult, MiB, Reason, Status, Stream
from sandbox.engine import EngineConfig, ExecutionEngine, MetricSample, get_engine
from sandbox.errors import EngineUnavailable, ImageError
from sandbox.runsc import RunscEngine
from tests.sandbox.support import FIVE_CHILDREN, make_request

Run = Callable[..., ExecResult]

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("nothing_left_behind")]


def test_it_reports_runsc_and_its_platform_in_the_result(engine: ExecutionEngine) -> None:
    result = engine.execute(make_request("print(1)"))
    assert result.engine == "runsc"
    assert result.runtime_version.startswith("runsc")
    assert result.timings.boot_seconds is not None
    assert result.timings.boot_seconds > 0 or result.timings.pooled  # a pooled sandbox booted before


# -- sweep ------------------------------------------------------------------------------------------


def test_the_boot_time_is_noted_within_a_few_ms_of_the_sandbox_coming_up(
    engine: ExecutionEngine, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    engine = get_engine("runsc", dataclasses.replace(engine.config, pool_size=0))  # every run boots
    request.addfinalizer(engine.close)
    lags: list[float] = []
    tick = runsc_module._Run._tick

    def noting_tick(run: Any, now: float, pump: Any) -> None:
        was_booted = run.booted_at is not None
        tick(run, now, pump)
        if not was_booted and run.booted_at is not None:
            lags.append(time.time() - run.pidfile.stat().st_mtime)  # runsc wrote it then

    monkeypatch.setattr(runsc_module._Run, "_tick", noting_tick)
    for _ in range(3):
        assert engine.execute(make_request("print(1)")).timings.boot_seconds is not None
    assert len(lags) == 3 and max(lags) < 0.02, lags  # not the 0-50 ms of the pump's idle poll


def fake_leftover(engine: ExecutionEngine, name: str) -> tuple[Path, cgroups.RunCgroup, subprocess.Popen]:
    """A dead worker's run: its work dir (lock free), its cgroup, and a process still inside it."""
    workdir = engine.config.state_dir / name
    (workdir / "code").mkdir(parents=True)
    (workdir / "code" / "main.py").write_text("print(1)")
    (workdir / "lock").write_text("")
    cgroup = cgroups.RunCgroup(engine.config.cgroup_parent, name)
    cgroup.create(memory_bytes=64 * MiB, cpu_cores=1)
    proc = subprocess.Popen(
        ["/bin/sh", "-c", 'for f in $PROCS; do echo $$ > "$f"; done; exec sleep 60'],
        env={"PATH": "/usr/bin:/bin", "PROCS": " ".join(cgroup.procs_files)},
    )
    deadline = time.monotonic() + 5
    while proc.pid not in cgroup.pids_inside():
        assert time.monotonic() < deadline, "the straggler never joined the cgroup"
        time.sleep(0.02)
    return workdir, cgroup, proc


def test_sweep_removes_a_dead_workers_leftovers(engine: ExecutionEngine) -> None:
    name = f"{runsc_module.RUN_PREFIX}deadbeef00000000"
    workdir, cgroup, proc = fake_leftover(engine, name)
    try:
        assert name in cgroups.leftover_names(engine.config.cgroup_parent)
        engine.sweep()
        assert not workdir.exists()
        assert name not in cgroups.leftover_names(engine.config.cgroup_parent)
        assert all(not d.exists() for d in cgroup.dirs.values())
        assert proc.wait(timeout=5) == -9
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cgroup.kill_all()
        cgroup.remove()


def test_sweep_removes_an_empty_cgroup_without_a_work_dir_once_it_is_old_enough_to_have_been_joined(
    engine: ExecutionEngine,
) -> None:
    name = f"{runsc_module.RUN_PREFIX}deadbeef00000001"
    cgroup = cgroups.RunCgroup(engine.config.cgroup_parent, name)
    cgroup.create(memory_bytes=64 * MiB, cpu_cores=1)
    try:
        # Just made, it may be another state dir's launcher that has yet to join it.
        engine.sweep()
        assert all(d.is_dir() for d in cgroup.dirs.values())
        made = time.time() - cgroups.ORPHAN_MIN_AGE_SECONDS - 1
        for d in cgroup.dirs.values():
            os.utime(d, (made, made))
        engine.sweep()
        assert all(not d.exists() for d in cgroup.dirs.values())
    finally:
        cgroup.remove()


def test_sweep_spares_a_run_whose_lock_is_held(engine: ExecutionEngine) -> None:
    name = f"{runsc_module.RUN_PREFIX}deadbeef00000002"
    workdir, cgroup, proc = fake_leftover(engine, name)
    lock = open(workdir / "lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        engine.sweep()
        assert workdir.exists()
        assert name in cgroups.leftover_names(engine.config.cgroup_parent)
        assert proc.poll() is None
    finally:
        lock.close()
        engine.sweep()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        cgroup.remove()
    assert not workdir.exists()


def test_sweep_leaves_other_files_in_the_state_dir_alone(engine: ExecutionEngine) -> None:
    other = engine.config.state_dir / "not-a-run"
    other.mkdir()
    try:
        engine.sweep()
        assert other.exists()
    finally:
        other.rmdir()


@pytest.mark.parametrize("sweeper", ["same engine", "engine with another state dir"])
def test_sweep_spares_a_live_run(engine: ExecutionEngine, tmp_path: Path, sweeper: str) -> None:
    other_config = EngineConfig(
        images_dir=engine.config.images_dir,
        state_dir=tmp_path / "other-state",
        cgroup_parent=engine.config.cgroup_parent,
    )
    sweeping = engine if sweeper == "same engine" else get_engine("runsc", other_config)
    out: dict[str, ExecResult] = {}
    thread = threading.Thread(
        target=lambda: out.setdefault("r", engine.execute(make_request("import time; time.sleep(2); print('ok')")))
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not cgroups.leftover_names(engine.config.cgroup_parent):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.5)
    sweeping.sweep()
    thread.join()
    result = out["r"]
    assert (result.status, result.stdout.data) == (Status.SUCCEEDED, b"ok\n"), result


# -- availability -----------------------------------------------------------------------------------


def test_an_unknown_engine_name_is_unavailable(engine: ExecutionEngine) -> None:
    with pytest.raises(EngineUnavailable, match="runsc"):
        get_engine("firecracker", engine.config)


def test_a_missing_runsc_binary_is_unavailable_with_install_instructions(engine: ExecutionEngine) -> None:
    config = EngineConfig(
        images_dir=engine.config.images_dir,
        state_dir=engine.config.state_dir,
        runsc_path="/nonexistent/runsc",
        cgroup_parent=engine.config.cgroup_parent,
    )
    missing = RunscEngine(config)
    with pytest.raises(EngineUnavailable) as info:
        missing.check()
    message = str(info.value)
    assert "runsc" in message
    assert "apt-get install" in message
    with pytest.raises(EngineUnavailable):
        missing.execute(make_request("print(1)"))


def test_a_missing_image_says_how_to_build_it(engine: ExecutionEngine, tmp_path: Path) -> None:
    config = EngineConfig(
        images_dir=tmp_path / "no-images", state_dir=engine.config.state_dir, cgroup_parent=engine.config.cgroup_parent
    )
    with pytest.raises(ImageError, match="build-image"):
        RunscEngine(config).check()


# -- guest process counts and the process limit ----------------------------------------------------


def test_it_reports_the_peak_number_of_processes_inside_the_sandbox(run: Run) -> None:
    samples: list[MetricSample] = []
    result = run(FIVE_CHILDREN, on_metrics=samples.append)
    assert result.status is Status.SUCCEEDED, result
    # The guest's own count (the program and its 5 children), not the sentry's host threads (~30).
    assert result.usage.peak_processes == 6
    assert 6 in [s.processes for s in samples], samples


def test_processes_are_counted_on_the_sandboxs_control_socket_without_starting_runsc(
    run: Run, runsc_events_started: list[list[str]]
) -> None:
    result = run(FIVE_CHILDREN)
    assert result.usage.peak_processes == 6
    assert runsc_events_started == []  # each query ~0.3 ms instead of a ~25 ms runsc process


def test_a_sandbox_that_does_not_answer_as_expected_is_asked_through_runsc_instead(
    run: Run, runsc_events_started: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process_count, "EVENT_METHOD", "containerManager.NoSuchMethod")  # a future runsc
    result = run(FIVE_CHILDREN)
    assert result.usage.peak_processes == 6
    assert runsc_events_started


def test_without_a_control_socket_processes_are_counted_through_runsc(
    run: Run, runsc_events_started: list[list[str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(runsc_module, "control_socket", lambda root, sandbox_id: tmp_path / "elsewhere.sock")
    result = run(FIVE_CHILDREN)
    assert result.usage.peak_processes == 6
    assert runsc_events_started


def test_threads_count_as_processes_like_the_limit_does(run: Run) -> None:
    code = "import threading, time\nfor _ in range(3):\n    threading.Thread(target=time.sleep, args=(1,)).start()"
    result = run(code)
    assert result.status is Status.SUCCEEDED, result
    assert result.usage.peak_processes == 4


def test_a_short_run_still_reports_its_processes(run: Run) -> None:
    samples: list[MetricSample] = []
    result = run("import time; time.sleep(0.8)", on_metrics=samples.append)
    assert result.usage.peak_processes == 1
    # None only until the first reading, which comes as soon as the sandbox exists.
    counts = [s.processes for s in samples]
    assert 1 in counts and set(counts[counts.index(1) :]) == {1}, samples


def test_a_fork_bomb_is_contained_and_reported_as_the_process_limit(run: Run) -> None:
    # Every process forks until fork() fails with EAGAIN, then dies of the BlockingIOError.
    started = time.monotonic()
    result = run("import os\nwhile True: os.fork()", processes=32, wall_seconds=10)
    assert time.monotonic() - started < 12
    assert result.status is Status.FAILED, result  # not ERROR: runsc survived
    assert result.reason is Reason.PIDS_LIMIT, result
    assert result.usage.peak_processes == 32
    assert "process limit of 32" in result.detail
    assert b"Resource temporarily unavailable" in result.stderr.data


def test_a_fork_bomb_that_survives_refused_forks_ends_at_the_wall_limit_as_the_process_limit(run: Run) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    started = time.monotonic()
    result = run(code, processes=32, wall_seconds=3)
    took = time.monotonic() - started
    assert 3 <= took < 6, took
    assert (result.status, result.reason) == (Status.FAILED, Reason.PIDS_LIMIT), result
    assert result.exit_code is None
    assert result.usage.peak_processes == 32
    assert "process limit of 32" in result.detail and "wall-time limit of 3 s" in result.detail


def test_a_failing_program_below_the_process_limit_fails_with_its_exit_code(run: Run) -> None:
    code = """
import os, time
for _ in range(3):
    if os.fork() == 0:
        time.sleep(0.8)
        os._exit(0)
time.sleep(0.8)
raise SystemExit(3)
"""
    result = run(code, processes=8)
    assert (result.status, result.reason, result.exit_code) == (Status.FAILED, Reason.EXIT_CODE, 3), result
    assert result.usage.peak_processes == 4


def test_a_slow_program_with_a_few_processes_times_out_as_a_timeout(run: Run) -> None:
    code = "import os, time\nos.fork()\ntime.sleep(30)"
    result = run(code, processes=8, wall_seconds=1.5)
    assert (result.status, result.reason) == (Status.FAILED, Reason.TIMEOUT), result
    assert result.usage.peak_processes == 2


def test_output_reaches_the_callback_within_50_ms_while_processes_are_sampled(run: Run) -> None:
    latencies: list[float] = []

    def on_output(stream: Stream, offset: int, chunk: bytes) -> None:
        now = time.time()
        latencies.extend(now - float(line[2:]) for line in chunk.split(b"\n") if line.startswith(b"T "))

    code = "import time\nfor _ in range(40):\n    print(f'T {time.time()!r}')\n    time.sleep(0.05)"
    samples: list[MetricSample] = []
    result = run(code, on_output=on_output, on_metrics=samples.append)
    assert result.status is Status.SUCCEEDED, result
    assert len(latencies) == 40
    assert len(samples) >= 3  # the 500 ms metrics ticks (and their process queries) happened meanwhile
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.01, latencies
    assert latencies[-3] < 0.05, latencies


# -- how often the guest's process count is asked for -------------------------------------------------


def poll_for(guest: process_count.GuestProcesses, seconds: float) -> None:
    started = time.monotonic()
    guest.booted(started)
    while (now := time.monotonic()) - started < seconds:
        guest.poll(now, launch=True)
        time.sleep(0.005)  # the pump's boot-time tick
    guest.finish()


def test_a_sandbox_not_answering_yet_is_asked_again_soon_on_its_socket(tmp_path: Path) -> None:
    import json
    import socket

    asked = 0
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "control.sock"))
    server.listen(16)

    def answer() -> None:
        nonlocal asked
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                asked += 1
                conn.sendall(json.dumps({"success": False, "err": "container not started"}).encode())

    threading.Thread(target=answer, daemon=True).start()
    guest = process_count.GuestProcesses(["/bin/false"], 8, socket_path=tmp_path / "control.sock", container_id="x")
    poll_for(guest, 0.3)
    server.close()
    assert asked >= 5, asked  # every ~20 ms until a first count, not once per 500 ms
    assert guest.counts.samples == []


def test_a_failing_runsc_events_is_not_restarted_every_20_ms(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    started: list[object] = []
    real = process_count._CommandQuery

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, command: list[str]) -> None:
            started.append(command)
            super().__init__(command)

    monkeypatch.setattr(process_count, "_CommandQuery", Counting)
    guest = process_count.GuestProcesses(["/bin/false"], 8, socket_path=tmp_path / "missing.sock", container_id="x")
    poll_for(guest, 0.6)
    assert 1 <= len(started) <= 2, started  # at boot and a metrics period later
