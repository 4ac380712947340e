"""Unit tests of sandbox.runsc.oci_spec: the OCI config every sandbox is started with."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from sandbox.contract import ExecRequest, Limits, MiB
from sandbox.guest_env import GUEST_DIR
from sandbox.gvisor import SANDBOX_UID
from sandbox.images import Image
from sandbox.runsc import oci_spec

FIXED_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONPATH": "/opt/crucible",
}
CODE_DIR = Path("/var/lib/crucible/sandboxes/crucible-runsc-0123456789abcdef/code")


def spec_for(image: Image, request: ExecRequest | None = None) -> dict[str, Any]:
    request = request or ExecRequest(files={"main.py": b"print(1)"})
    spec = oci_spec(request, image.rootfs, CODE_DIR)
    json.dumps(spec)  # it is written as config.json: it must serialise
    return spec


def env_of(spec: dict[str, Any]) -> dict[str, str]:
    pairs = [entry.split("=", 1) for entry in spec["process"]["env"]]
    assert all(len(p) == 2 for p in pairs)
    env = dict(pairs)
    assert len(env) == len(pairs), "duplicate variables in the spec's env"
    return env


def mount_at(spec: dict[str, Any], destination: str) -> dict[str, Any]:
    found = [m for m in spec["mounts"] if m["destination"] == destination]
    assert len(found) == 1, f"expected exactly one mount at {destination}: {spec['mounts']}"
    return found[0]


def test_it_runs_the_process_as_nobody(image: Image) -> None:
    user = spec_for(image)["process"]["user"]
    assert SANDBOX_UID == 65534
    assert user["uid"] == 65534
    assert user["gid"] == 65534


def test_it_grants_no_capabilities(image: Image) -> None:
    caps = spec_for(image)["process"]["capabilities"]
    assert set(caps) == {"bounding", "effective", "inheritable", "permitted", "ambient"}
    assert all(v == [] for v in caps.values()), caps


def test_it_sets_no_new_privileges(image: Image) -> None:
    assert spec_for(image)["process"]["noNewPrivileges"] is True


def test_the_root_is_the_images_rootfs_mounted_read_only(image: Image) -> None:
    root = spec_for(image)["root"]
    assert root["readonly"] is True
    assert root["path"] == str(image.rootfs)
    rootfs = Path(root["path"]).resolve()
    # A dedicated tree, never the host's own / or /usr.
    assert rootfs != Path("/")
    assert not str(rootfs).startswith(("/usr", "/bin", "/lib"))
    assert (rootfs / "usr" / "bin" / "python3").exists()
    assert not os.path.samefile(rootfs / "usr", "/usr")


def test_it_mounts_only_the_code_and_crucibles_guest_files_read_only(image: Image) -> None:
    spec = spec_for(image)
    binds = {m["destination"]: m for m in spec["mounts"] if m.get("type") == "bind" or "bind" in m.get("options", [])}
    assert sorted(binds) == ["/code", "/opt/crucible"]
    assert binds["/code"]["source"] == str(CODE_DIR)
    assert binds["/opt/crucible"]["source"] == str(GUEST_DIR)
    assert sorted(p.name for p in GUEST_DIR.iterdir() if p.suffix == ".py") == ["sitecustomize.py"]
    assert all("ro" in m["options"] for m in binds.values())
    assert spec["process"]["cwd"] == "/code"


def test_it_runs_the_entrypoint_with_python_and_the_requests_argv(image: Image) -> None:
    request = ExecRequest(files={"main.py": b"", "tool.py": b""}, entrypoint="tool.py", argv=("a", "b c"))
    args = spec_for(image, request)["process"]["args"]
    assert args[0] == "/usr/bin/python3"
    assert args[-3:] == ["/code/tool.py", "a", "b c"]
    assert spec_for(image, request)["process"]["terminal"] is False


@pytest.mark.parametrize("processes", [1, 64, 1024])
def test_rlimit_nproc_equals_the_process_limit(image: Image, processes: int) -> None:
    request = ExecRequest(files={"main.py": b""}, limits=Limits(processes=processes))
    rlimits = {r["type"]: r for r in spec_for(image, request)["process"]["rlimits"]}
    assert rlimits["RLIMIT_NPROC"]["soft"] == processes
    assert rlimits["RLIMIT_NPROC"]["hard"] == processes


def test_other_rlimits_follow_the_limits(image: Image) -> None:
    limits = Limits(file_size_bytes=5 * MiB, open_files=100)
    spec = spec_for(image, ExecRequest(files={"main.py": b""}, limits=limits))
    rlimits = {r["type"]: r for r in spec["process"]["rlimits"]}
    assert rlimits["RLIMIT_FSIZE"] == {"type": "RLIMIT_FSIZE", "soft": 5 * MiB, "hard": 5 * MiB}
    assert rlimits["RLIMIT_NOFILE"] == {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100}
    assert rlimits["RLIMIT_CORE"]["hard"] == 0


@pytest.mark.parametrize("tmp_bytes", [1 * MiB, 16 * MiB, 100 * MiB])
def test_tmp_is_a_tmpfs_sized_to_the_tmp_limit(image: Image, tmp_bytes: int) -> None:
    request = ExecRequest(files={"main.py": b""}, limits=Limits(memory_bytes=256 * MiB, tmp_bytes=tmp_bytes))
    tmp = mount_at(spec_for(image, request), "/tmp")
    assert tmp["type"] == "tmpfs"
    assert f"size={tmp_bytes}" in tmp["options"]
    assert "nosuid" in tmp["options"] and "nodev" in tmp["options"]


def test_it_has_its_own_network_namespace(image: Image) -> None:
    namespaces = spec_for(image)["linux"]["namespaces"]
    types = [ns["type"] for ns in namespaces]
    assert "network" in types
    net = next(ns for ns in namespaces if ns["type"] == "network")
    assert "path" not in net, "joining an existing network namespace would share the host's"
    for t in ("pid", "ipc", "uts", "mount"):
        assert t in types


def test_the_environment_is_only_the_fixed_variables(image: Image, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRUCIBLE_TEST_SECRET", "s3cr3t-spec")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "also-secret")
    spec = spec_for(image)
    assert env_of(spec) == FIXED_ENV
    assert "s3cr3t-spec" not in json.dumps(spec)
    assert "also-secret" not in json.dumps(spec)


def test_the_environment_adds_the_requests_variables(image: Image, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRUCIBLE_TEST_SECRET", "s3cr3t-spec")
    request = ExecRequest(files={"main.py": b""}, env={"GREETING": "hi", "EMPTY": ""})
    spec = spec_for(image, request)
    assert env_of(spec) == {**FIXED_ENV, "GREETING": "hi", "EMPTY": ""}
    assert "CRUCIBLE_TEST_SECRET" not in env_of(spec)
