"""docker-specific tests: what dockerd is told, the image import, the sweep, availability.

What every engine must do is in test_conformance.py, which runs against docker too.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.contract import ExecResult, Limits, MiB, Reason, Status, Stream
from sandbox.docker.daemon import PrivateDockerd
from sandbox.docker.engine import LABEL_STATE_DIR, RUN_PREFIX, DockerEngine
from sandbox.engine import EngineConfig, ExecutionEngine
from sandbox.errors import EngineUnavailable
from sandbox.gvisor import SENTRY_OVERHEAD_BYTES
from sandbox.images import Image
from tests.sandbox.support import FIVE_CHILDREN, REPO_ROOT, make_request

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture
def engine(docker_engine: ExecutionEngine) -> DockerEngine:
    assert isinstance(docker_engine, DockerEngine)
    return docker_engine


@pytest.fixture(autouse=True)
def _nothing_left_behind(engine: DockerEngine, nothing_left_behind: None) -> None:
    """Every test here runs against the docker engine and leaves nothing behind."""


def containers(engine: DockerEngine) -> list[dict[str, Any]]:
    return engine._api().containers(all=True, filters={"label": f"{LABEL_STATE_DIR}={engine.config.state_dir}"})


def test_the_container_gets_gvisor_no_network_no_privileges_and_the_requests_limits(engine: DockerEngine) -> None:
    seen: dict[str, Any] = {}

    def inspect(stream: Stream, offset: int, chunk: bytes) -> None:
        if not seen:
            (info,) = containers(engine)
            seen.update(engine._api().inspect_container(info["Id"]))

    limits = Limits(memory_bytes=96 * MiB, tmp_bytes=8 * MiB, cpu_cores=0.5, processes=12, open_files=100)
    result = engine.execute(
        make_request("import time; print('up', flush=True); time.sleep(0.5)", limits=limits), on_output=inspect
    )
    assert result.status is Status.SUCCEEDED, result
    host, config = seen["HostConfig"], seen["Config"]
    assert host["Runtime"] == "runsc"
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["NanoCpus"] == 500_000_000
    # The container's memory limit sits a little above the run cgroup's, where the OOM is counted.
    assert host["Memory"] == host["MemorySwap"] > 96 * MiB + SENTRY_OVERHEAD_BYTES
    assert host["PidsLimit"] >= 4096  # a backstop only: a small pids limit crashes runsc
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in host["Ulimits"]}
    assert ulimits["nproc"] == (12, 12)
    assert ulimits["nofile"] == (100, 100)
    assert ulimits["fsize"] == (limits.file_size_bytes, limits.file_size_bytes)
    assert host["Tmpfs"] == {"/tmp": f"size={8 * MiB},mode=1777,nosuid,nodev"}
    mounts = {m["Target"]: m for m in host["Mounts"]}
    assert set(mounts) == {"/code", "/opt/crucible"}
    assert all(m["ReadOnly"] and m["Type"] == "bind" for m in mounts.values())
    assert host["CgroupParent"].startswith(f"/{engine.cgroup_parent}/{RUN_PREFIX}")
    assert host["LogConfig"]["Type"] == "none"
    assert config["User"] == "65534:65534"
    assert config["WorkingDir"] == "/code"
    assert config["Cmd"] == ["/usr/bin/python3", "-u", "/code/main.py"]
    assert config["Labels"][LABEL_STATE_DIR] == str(engine.config.state_dir)


@pytest.mark.parametrize("code", ["bytearray(1024**3)", "x = []\nwhile True:\n    x.append(bytearray(1 << 20))"])
def test_an_oom_is_reported_from_the_run_cgroup_even_when_docker_misses_it(
    engine: DockerEngine, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    import sandbox.docker.engine

    monkeypatch.setattr(sandbox.docker.engine._Run, "_oom_killed", lambda self: False)
    result = engine.execute(make_request(code, memory_bytes=96 * MiB, tmp_bytes=8 * MiB, wall_seconds=20))
    assert (result.status, result.reason) == (Status.FAILED, Reason.MEMORY_LIMIT), result


def test_the_image_is_imported_once_per_rootfs_digest(engine: DockerEngine, image: Image) -> None:
    tag = engine._image_tag(image)
    assert tag.startswith(f"crucible/{image.name}:")
    first = engine._api().inspect_image(tag)
    assert first["Config"]["Labels"]["crucible.rootfs-digest"] == image.digest
    fresh = DockerEngine(engine.config)  # a new worker: asks dockerd, does not import again
    started = time.monotonic()
    assert fresh._image_tag(image) == tag
    assert time.monotonic() - started < 2
    assert engine._api().inspect_image(tag)["Id"] == first["Id"]


def test_processes_are_counted_on_the_sandboxs_control_socket_despite_its_long_path(
    engine: DockerEngine, runsc_events_started: list[list[str]]
) -> None:
    # docker's runsc state dir makes the socket's path longer than a sockaddr_un holds.
    result = engine.execute(make_request(FIVE_CHILDREN))
    assert result.usage.peak_processes == 6
    assert runsc_events_started == []


def test_it_reports_docker_and_runsc_versions(engine: DockerEngine) -> None:
    version = engine.runtime_version()
    assert version.startswith("docker ") and "runsc" in version


def test_sweep_removes_a_dead_workers_container_and_work_dir(engine: DockerEngine, image: Image) -> None:
    name = f"{RUN_PREFIX}deadbeef00000000"
    workdir = engine.config.state_dir / name
    (workdir / "code").mkdir(parents=True)
    (workdir / "lock").write_text("")  # nobody holds it: its worker died
    engine._api().create_container(
        engine._image_tag(image), name=name, command=["true"], labels={LABEL_STATE_DIR: str(engine.config.state_dir)}
    )
    assert [c["Names"] for c in containers(engine)] == [[f"/{name}"]]
    engine.sweep()
    assert containers(engine) == []
    assert not workdir.exists()


def test_sweep_spares_a_live_run(engine: DockerEngine) -> None:
    out: dict[str, ExecResult] = {}
    thread = threading.Thread(
        target=lambda: out.setdefault("r", engine.execute(make_request("import time; time.sleep(2); print('ok')")))
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not containers(engine):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.8)
    engine.sweep()
    thread.join()
    assert (out["r"].status, out["r"].stdout.data) == (Status.SUCCEEDED, b"ok\n"), out["r"]


def test_a_dockerd_that_does_not_answer_is_unavailable_with_instructions(engine: DockerEngine, tmp_path: Path) -> None:
    config = EngineConfig(
        images_dir=engine.config.images_dir, state_dir=engine.config.state_dir, docker_url=f"unix://{tmp_path}/no.sock"
    )
    with pytest.raises(EngineUnavailable) as info:
        DockerEngine(config).check()
    message = str(info.value)
    assert "docker.io" in message and "python -m sandbox.docker.daemon start" in message


def test_without_the_docker_package_it_is_unavailable_with_instructions(
    engine: DockerEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # `import docker` now raises ImportError
    with pytest.raises(EngineUnavailable, match=r"pip install .*docker=="):
        DockerEngine(engine.config).check()


def test_the_private_dockerd_stays_off_the_hosts_network(tmp_path: Path) -> None:
    config = PrivateDockerd(tmp_path).daemon_config()
    assert config["iptables"] is False and config["bridge"] == "none" and config["ip-forward"] is False
    runtimes = config["runtimes"]
    assert isinstance(runtimes, dict) and runtimes["runsc"]["runtimeArgs"] == ["--network=none"]
    assert config["hosts"] == [f"unix://{tmp_path.resolve()}/run/docker.sock"]


def test_a_private_dockerd_in_a_deep_directory_keeps_its_sockets_short(tmp_path: Path) -> None:
    daemon = PrivateDockerd(tmp_path / ("d" * 120))
    assert len(str(daemon.socket_path)) < 100
    assert str(daemon.run_dir).startswith("/run/crucible-docker-")


def test_the_private_dockerd_has_a_command_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox.docker.daemon", "status", "--dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1, proc.stderr  # nothing answers in an empty directory
    assert proc.stdout == f"not answering: DOCKER_HOST=unix://{tmp_path.resolve()}/run/docker.sock\n"
