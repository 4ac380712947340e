"""Unit tests of sandbox.archive: project uploads are unpacked safely or refused, naming the entry."""

from __future__ import annotations

import gzip
import io
import stat
import struct
import tarfile
import time
import tracemalloc
import zipfile
from collections.abc import Iterable

import pytest

from sandbox.archive import unpack_archive
from sandbox.contract import ExecRequest, MiB
from sandbox.errors import InvalidRequest

# -- building archives ------------------------------------------------------------------------------


def make_zip(entries: Iterable[tuple[str, bytes]], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


def zip_with_mode(name: str, data: bytes, mode: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("main.py", b"print(1)")
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = mode << 16
        z.writestr(info, data)
    return buf.getvalue()


def tar_info(name: str, *, kind: bytes = tarfile.REGTYPE, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.linkname = linkname
    return info


def make_tar(members: Iterable[tuple[tarfile.TarInfo, bytes | None]], *, gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as t:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def tar_files(files: dict[str, bytes], *, gz: bool = True) -> bytes:
    return make_tar(((tar_info(name), data) for name, data in files.items()), gz=gz)


def rejected(data: bytes, filename: str, **caps: int) -> str:
    with pytest.raises(InvalidRequest) as info:
        unpack_archive(data, filename, **caps)
    assert info.value.field == "archive"
    return str(info.value)


# -- what is accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize("filename", ["project.zip", "project.tar.gz", "project.tgz", "project.tar", "P.ZIP"])
def test_it_unpacks_every_supported_format(filename: str) -> None:
    files = {"main.py": b"import lib.util\n", "lib/__init__.py": b"", "lib/util.py": b"X = 1\x00\xff"}
    lower = filename.lower()
    data = make_zip(files.items()) if lower.endswith(".zip") else tar_files(files, gz=not lower.endswith(".tar"))
    assert unpack_archive(data, filename) == files


def test_a_gzipped_file_named_tar_is_read_by_its_content() -> None:
    assert unpack_archive(tar_files({"main.py": b"1"}, gz=True), "p.tar") == {"main.py": b"1"}


def test_it_refuses_bzip2_and_xz_tars() -> None:
    for mode in ("w:bz2", "w:xz"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode=mode) as t:
            t.addfile(tar_info("main.py", size=1), io.BytesIO(b"x"))
        assert "not supported" in rejected(buf.getvalue(), "p.tar")


def test_it_strips_a_single_common_top_level_directory() -> None:
    data = make_zip([("project/", b""), ("project/main.py", b"print(1)"), ("project/pkg/mod.py", b"")])
    assert unpack_archive(data, "p.zip") == {"main.py": b"print(1)", "pkg/mod.py": b""}


def test_it_strips_the_directory_of_a_tar_made_with_dot_slash_names() -> None:
    data = tar_files({"./project/main.py": b"1", "./project/a/b.py": b"2"})
    assert unpack_archive(data, "p.tar.gz") == {"main.py": b"1", "a/b.py": b"2"}


def test_it_keeps_paths_when_files_are_not_all_under_one_directory() -> None:
    data = make_zip([("src/main.py", b""), ("README", b"")])
    assert set(unpack_archive(data, "p.zip")) == {"src/main.py", "README"}


def test_it_skips_macos_finder_metadata() -> None:
    data = make_zip([("project/main.py", b"x"), ("__MACOSX/project/._main.py", b"junk")])
    assert unpack_archive(data, "p.zip") == {"main.py": b"x"}


def test_the_result_is_a_valid_request() -> None:
    files = unpack_archive(make_zip([("app/main.py", b"print(1)"), ("app/data.txt", b"d")]), "app.zip")
    assert ExecRequest(files=files).files["main.py"] == b"print(1)"


# -- names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("/etc/passwd", "absolute"),
        ("../evil.py", "'..'"),
        ("pkg/../../evil.py", "'..'"),
        ("a//b.py", "empty or '.'"),
        ("a/./b.py", "empty or '.'"),
        ("dir\\evil.py", "backslash"),
    ],
)
@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_it_rejects_unsafe_names_naming_the_entry(name: str, why: str, fmt: str) -> None:
    entries = {"main.py": b"print(1)", name: b"x"}
    data = make_zip(entries.items()) if fmt == "zip" else tar_files(entries)
    message = rejected(data, f"p.{fmt}")
    assert repr(name) in message
    assert why in message


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_it_rejects_duplicate_names(fmt: str) -> None:
    entries = [("main.py", b"a"), ("./main.py", b"b")] if fmt == "tar" else [("main.py", b"a"), ("main.py", b"b")]
    if fmt == "zip":
        with pytest.warns(UserWarning, match="Duplicate name"):
            data = make_zip(entries)
    else:
        data = make_tar(((tar_info(n), d) for n, d in entries), gz=False)
    assert "twice" in rejected(data, f"p.{fmt}")


def test_it_rejects_a_file_that_is_also_a_directory() -> None:
    message = rejected(make_zip([("lib", b"x"), ("lib/mod.py", b"y")]), "p.zip")
    assert "'lib/mod.py'" in message and "'lib' is a file" in message


# -- links and special files ------------------------------------------------------------------------


def test_it_rejects_a_tar_with_a_symlink() -> None:
    data = make_tar(
        [(tar_info("main.py"), b"x"), (tar_info("secret", kind=tarfile.SYMTYPE, linkname="/etc/shadow"), None)]
    )
    message = rejected(data, "p.tar.gz")
    assert "'secret'" in message and "links" in message


def test_it_rejects_a_tar_with_a_hard_link() -> None:
    data = make_tar(
        [(tar_info("main.py"), b"x"), (tar_info("copy", kind=tarfile.LNKTYPE, linkname="/etc/shadow"), None)], gz=False
    )
    assert "'copy'" in rejected(data, "p.tar")


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE], ids=["chr", "blk", "fifo"])
def test_it_rejects_a_tar_with_a_device_node_or_fifo(kind: bytes) -> None:
    device = tar_info("dev/sda", kind=kind)
    device.devmajor, device.devminor = 8, 0
    message = rejected(make_tar([(tar_info("main.py"), b"x"), (device, None)]), "p.tgz")
    assert "'dev/sda'" in message and "special files" in message


def test_it_rejects_a_zip_with_a_symlink() -> None:
    data = zip_with_mode("link", b"/etc/shadow", stat.S_IFLNK | 0o777)
    message = rejected(data, "p.zip")
    assert "'link'" in message and "symbolic links" in message


def test_it_rejects_a_zip_with_a_device_node() -> None:
    assert "special files" in rejected(zip_with_mode("dev", b"", stat.S_IFCHR | 0o600), "p.zip")


# -- caps and bombs ---------------------------------------------------------------------------------


def test_it_rejects_too_many_entries_naming_the_first_one_over() -> None:
    data = make_zip((f"f{i}.py", b"") for i in range(11))
    message = rejected(data, "p.zip", max_entries=10)
    assert "'f10.py'" in message and "more than 10 entries" in message


def test_directories_count_as_entries() -> None:
    data = make_tar([(tar_info("main.py"), b"x")] + [(tar_info(f"d{i}", kind=tarfile.DIRTYPE), None) for i in range(5)])
    assert "more than 5 entries" in rejected(data, "p.tgz", max_entries=5)


def test_it_rejects_a_file_over_the_file_cap() -> None:
    data = tar_files({"main.py": b"x", "big.bin": b"y" * 2000})
    message = rejected(data, "p.tgz", max_file_bytes=1000)
    assert "'big.bin'" in message and "larger than 1000 bytes" in message


def test_it_rejects_files_adding_up_to_more_than_the_total_cap() -> None:
    data = make_zip((f"f{i}.bin", b"z" * 400) for i in range(4))
    message = rejected(data, "p.zip", max_total_bytes=1000, max_file_bytes=1000)
    assert "'f2.bin'" in message and "more than 1000 bytes" in message


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """1 GiB of zeros, deflated to ~5 MB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("main.py", b"print(1)")
        with z.open("zeros.bin", "w", force_zip64=True) as f:
            chunk = bytes(MiB)
            for _ in range(1024):
                f.write(chunk)
    return buf.getvalue()


def test_a_zip_bomb_is_refused_without_being_decompressed(zip_bomb: bytes) -> None:
    assert len(zip_bomb) < 10 * MiB
    tracemalloc.start()
    started = time.monotonic()
    try:
        message = rejected(zip_bomb, "bomb.zip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "'zeros.bin'" in message
    assert time.monotonic() - started < 2
    assert peak < 32 * MiB, peak


def lie_about_size(data: bytes, name: bytes, size: int) -> bytes:
    """Rewrite the uncompressed size in the local and central headers of a (non-zip64) entry."""
    out = bytearray(data)
    local = out.index(b"PK\x03\x04")
    while out[local + 30 : local + 30 + len(name)] != name:
        local = out.index(b"PK\x03\x04", local + 4)
    struct.pack_into("<I", out, local + 22, size)
    central = out.index(b"PK\x01\x02")
    while out[central + 46 : central + 46 + len(name)] != name:
        central = out.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", out, central + 24, size)
    return bytes(out)


def test_a_zip_entry_that_lies_about_its_size_is_not_decompressed_past_the_cap() -> None:
    honest = make_zip([("main.py", b"print(1)"), ("zeros.bin", bytes(100 * MiB))])
    data = lie_about_size(honest, b"zeros.bin", 1000)
    tracemalloc.start()
    try:
        message = rejected(data, "p.zip", max_file_bytes=4 * MiB, max_total_bytes=4 * MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "'zeros.bin'" in message
    assert peak < 16 * MiB, peak


def test_a_tar_gz_bomb_is_refused_by_its_header_before_reading_the_data() -> None:
    small = tar_info("main.py", size=1).tobuf(tarfile.PAX_FORMAT) + b"x".ljust(512, b"\0")
    big = tar_info("zeros.bin", size=1024 * MiB).tobuf(tarfile.PAX_FORMAT)
    # The start of a 1 GiB member (64 MiB of its zeros): the header is what matters.
    data = gzip.compress(small + big + bytes(64 * MiB), compresslevel=1)
    started = time.monotonic()
    message = rejected(data, "bomb.tar.gz")
    assert "'zeros.bin'" in message and "larger than" in message
    assert time.monotonic() - started < 1


def test_a_huge_pax_header_cannot_make_tar_read_past_the_cap() -> None:
    info = tar_info("main.py")
    info.pax_headers = {"comment": "x" * (8 * MiB)}
    data = make_tar([(info, b"print(1)")])
    tracemalloc.start()
    try:
        message = rejected(data, "p.tgz", max_entries=4, max_total_bytes=1 * MiB, max_file_bytes=1 * MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "expands to more than" in message
    assert peak < 8 * MiB, peak


# -- what is not an archive -------------------------------------------------------------------------


def test_it_rejects_an_unsupported_file_name() -> None:
    message = rejected(make_zip([("main.py", b"")]), "project.rar")
    assert "'project.rar'" in message and ".zip" in message


@pytest.mark.parametrize("filename", ["p.zip", "p.tar.gz", "p.tar"])
def test_it_rejects_garbage(filename: str) -> None:
    assert "not a valid" in rejected(b"this is not an archive" * 100, filename)


def test_it_rejects_an_archive_without_files() -> None:
    assert "no files" in rejected(make_zip([("empty/", b"")]), "p.zip")


def test_it_rejects_encrypted_and_exotic_compression() -> None:
    data = make_zip([("main.py", b"print(1)" * 10)], compression=zipfile.ZIP_BZIP2)
    assert "compression" in rejected(data, "p.zip")
    encrypted = bytearray(make_zip([("main.py", b"x")], compression=zipfile.ZIP_STORED))
    for sig, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = encrypted.index(sig)
        encrypted[at + flag_offset] |= 0x1
    assert "encrypted" in rejected(bytes(encrypted), "p.zip")
