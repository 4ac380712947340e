"""A built sandbox image holds nothing of the host that built it: no resolver, name or apt mirror."""

from __future__ import annotations

import socket
from pathlib import Path

from sandbox.images import Image, host_mirror


def _etc_files(rootfs: Path) -> list[Path]:
    return [p for p in (rootfs / "etc").rglob("*") if p.is_file() and not p.is_symlink()]


def test_the_image_has_no_resolv_conf_hosts_or_mailname(image: Image):
    etc = image.rootfs / "etc"
    for name in ("resolv.conf", "hosts", "mailname"):
        assert not (etc / name).exists() and not (etc / name).is_symlink(), name


def test_the_image_is_not_named_after_the_host(image: Image):
    assert (image.rootfs / "etc" / "hostname").read_text().strip() not in {socket.gethostname(), ""}


def test_the_image_has_no_apt_sources_and_names_no_build_mirror(image: Image):
    apt = image.rootfs / "etc" / "apt"
    assert not (apt / "sources.list").exists()
    assert list((apt / "sources.list.d").glob("*")) == []
    mirror = host_mirror().encode()
    assert [p for p in _etc_files(image.rootfs) if mirror in p.read_bytes()] == []


def test_no_file_in_etc_repeats_the_hosts_nameservers(image: Image):
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        lines = []
    nameservers = [line.encode() for line in lines if line.startswith("nameserver ")]
    found = [p for p in _etc_files(image.rootfs) for ns in nameservers if ns in p.read_bytes()]
    assert found == []
