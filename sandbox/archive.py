"""Project uploads: unpack a .zip, .tar.gz/.tgz or .tar into request files, refusing anything unsafe.

Nothing is written to disk: entries become `{relative path: bytes}` for ExecRequest.files. What is
refused, skipped or stripped, and how bombs are bounded: docs/sandbox.md, "Project archives".
"""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
import zlib
from typing import Protocol

from sandbox.contract import MAX_FILES, MAX_TOTAL_FILE_BYTES, KiB, MiB, relative_path_problem, shown_path
from sandbox.errors import InvalidRequest

READ_CHUNK = 1 * MiB
# A tar stream holds headers and padding besides file data: at most this much per entry (long names
# and pax records included), plus the end-of-archive blocks.
TAR_OVERHEAD_PER_ENTRY = 8 * KiB
TAR_OVERHEAD_FIXED = 20 * KiB
SKIPPED_PREFIX = "__MACOSX/"
GZIP_MAGIC = b"\x1f\x8b"
SUFFIXES = {".zip": "zip", ".tar.gz": "tar.gz", ".tgz": "tar.gz", ".tar": "tar"}


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def archive_kind(filename: str) -> str | None:
    """'zip', 'tar.gz', 'tar', or None when the name has none of the supported suffixes."""
    lower = filename.lower()
    for suffix, kind in SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    return None


def unpack_archive(
    data: bytes,
    filename: str,
    *,
    max_entries: int = MAX_FILES,
    max_total_bytes: int = MAX_TOTAL_FILE_BYTES,
    max_file_bytes: int = MAX_TOTAL_FILE_BYTES,
) -> dict[str, bytes]:
    """The archive's regular files by relative path; InvalidRequest("archive", ...) if anything is unsafe."""
    kind = archive_kind(filename)
    if kind is None:
        raise InvalidRequest("archive", f"{filename!r} is not a supported archive: use .zip, .tar.gz, .tgz or .tar")
    collector = _Collector(max_entries, max_total_bytes, max_file_bytes)
    if kind == "zip":
        _unpack_zip(data, collector)
    elif data[:3] == b"BZh" or data[:6] == b"\xfd7zXZ\x00":
        raise InvalidRequest("archive", "bzip2 and xz compressed tar files are not supported: use .tar.gz or .zip")
    else:
        # By content, not by name: a gzipped ".tar" is common enough.
        _unpack_tar(data, data[:2] == GZIP_MAGIC, collector)
    return collector.result()


class _Collector:
    """Applies the naming rules and caps to entries as they are read."""

    def __init__(self, max_entries: int, max_total_bytes: int, max_file_bytes: int) -> None:
        self.max_entries, self.max_total_bytes, self.max_file_bytes = max_entries, max_total_bytes, max_file_bytes
        self.entries = 0
        self.total = 0
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = set()

    def entry(self, raw_name: str) -> None:
        """Count one more entry of any kind."""
        self.entries += 1
        if self.entries > self.max_entries:
            raise _reject(raw_name, f"the archive has more than {self.max_entries} entries")

    def name(self, raw_name: str, *, is_dir: bool = False) -> str | None:
        """The entry's clean relative path, or None if it is to be skipped."""
        name = raw_name
        while name.startswith("./"):
            name = name[2:]
        if is_dir:
            name = name.rstrip("/")
        if name in ("", ".") or (name + "/").startswith(SKIPPED_PREFIX):
            return None
        problem = relative_path_problem(name)
        if problem is not None:
            raise _reject(raw_name, problem)
        if name in self.files or name in self.dirs:
            raise _reject(raw_name, "the archive contains this name twice")
        return name

    def check_size(self, raw_name: str, size: int) -> None:
        if size > self.max_file_bytes:
            raise _reject(raw_name, f"the file is larger than {self.max_file_bytes} bytes")
        if self.total + size > self.max_total_bytes:
            raise _reject(raw_name, f"the files add up to more than {self.max_total_bytes} bytes")

    def read(self, raw_name: str, stream: _Readable) -> bytes:
        """Read a file in bounded chunks, counting as it decompresses."""
        out = bytearray()
        while True:
            chunk = stream.read(READ_CHUNK)
            if not chunk:
                break
            out += chunk
            self.check_size(raw_name, len(out))
        self.total += len(out)
        return bytes(out)

    def add_file(self, name: str, data: bytes) -> None:
        self.files[name] = data

    def result(self) -> dict[str, bytes]:
        if not self.files:
            raise InvalidRequest("archive", "the archive contains no files")
        for name in self.files:
            parts = name.split("/")
            for i in range(1, len(parts)):
                parent = "/".join(parts[:i])
                if parent in self.files:
                    raise _reject(name, f"its parent {parent!r} is a file in the archive")
        tops = {name.split("/", 1)[0] for name in self.files}
        if len(tops) == 1 and all("/" in name for name in self.files):
            # Every file under one directory ("project/..."): the project is that directory.
            cut = len(tops.pop()) + 1
            return {name[cut:]: data for name, data in self.files.items()}
        return dict(self.files)


def _reject(raw_name: str, why: str) -> InvalidRequest:
    return InvalidRequest("archive", f"entry {shown_path(raw_name)}: {why}")


# -- zip --------------------------------------------------------------------------------------------


def _unpack_zip(data: bytes, c: _Collector) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise InvalidRequest("archive", f"not a valid zip file: {exc}") from None
    with archive:
        for info in archive.infolist():
            raw = info.filename
            c.entry(raw)
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if info.create_system == 3 and kind:  # Unix mode bits present
                if stat.S_ISLNK(mode):
                    raise _reject(raw, "symbolic links are not allowed")
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise _reject(raw, "devices, FIFOs and other special files are not allowed")
            if info.is_dir():
                name = c.name(raw, is_dir=True)
                if name is not None:
                    c.dirs.add(name)
                continue
            name = c.name(raw)
            if name is None:
                continue
            if info.flag_bits & 0x1:
                raise _reject(raw, "encrypted entries are not supported")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                # bzip2/lzma decompress without an output bound in zipfile: a bomb would not be stopped.
                raise _reject(raw, "only stored and deflate compression are supported")
            c.check_size(raw, info.file_size)  # the declared size: refuse early, before any work
            try:
                with archive.open(info) as stream:
                    content = c.read(raw, stream)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise _reject(raw, f"cannot be read: {exc}") from None
            c.add_file(name, content)


# -- tar --------------------------------------------------------------------------------------------


class _Capped(io.RawIOBase):
    """A read-only stream that refuses to yield more than `cap` bytes, however much is asked for."""

    def __init__(self, inner: _Readable, cap: int) -> None:
        self.inner, self.remaining, self.cap = inner, cap, cap

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self.remaining + 1)
        data = self.inner.read(want)
        if len(data) > self.remaining:
            raise InvalidRequest("archive", f"the archive expands to more than {self.cap} bytes")
        self.remaining -= len(data)
        buffer[: len(data)] = data
        return len(data)


def _unpack_tar(data: bytes, gzipped: bool, c: _Collector) -> None:
    cap = c.max_total_bytes + c.max_entries * TAR_OVERHEAD_PER_ENTRY + TAR_OVERHEAD_FIXED
    inner: _Readable = gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") if gzipped else io.BytesIO(data)
    # Stream mode ("r|"): strictly sequential reads through the cap, so neither a long-name or pax
    # header nor a gzip bomb can make tarfile read (or decompress) more than `cap` bytes.
    stream = io.BufferedReader(_Capped(inner, cap), buffer_size=64 * KiB)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                _tar_member(archive, member, c)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise InvalidRequest("archive", f"not a valid {'tar.gz' if gzipped else 'tar'} file: {exc}") from None


def _tar_member(archive: tarfile.TarFile, member: tarfile.TarInfo, c: _Collector) -> None:
    raw = member.name
    c.entry(raw)
    if member.issym() or member.islnk():
        raise _reject(raw, "symbolic and hard links are not allowed")
    if member.ischr() or member.isblk() or member.isfifo():
        raise _reject(raw, "devices, FIFOs and other special files are not allowed")
    if member.isdir():
        name = c.name(raw, is_dir=True)
        if name is not None:
            c.dirs.add(name)
        return
    if not member.isreg() or member.issparse():
        raise _reject(raw, "only regular files and directories are allowed")
    name = c.name(raw)
    if name is None:
        return
    c.check_size(raw, member.size)  # the header's size: refuse early, before reading the data
    stream = archive.extractfile(member)
    assert stream is not None
    c.add_file(name, c.read(raw, stream))
