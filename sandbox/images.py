"""Root filesystem images for sandboxes: built once with debootstrap, cached by content hash.

Sandboxes never see the host's /usr: each image is a dedicated, trimmed Debian tree mounted
read-only. An image directory is `<images_dir>/<name>-<key>/` holding `rootfs/` and `manifest.json`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import ImageError, InvalidRequest

# Bump when the build steps change, so old caches are not reused for a different recipe.
BUILDER_VERSION = 4

TRIM_PATHS = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
    "var/cache/ldconfig",  # ldconfig's aux-cache differs between two builds of one recipe
)


@dataclass(frozen=True)
class ImageRecipe:
    name: str
    suite: str
    packages: tuple[str, ...]

    @property
    def key(self) -> str:
        blob = json.dumps(
            {"v": BUILDER_VERSION, "suite": self.suite, "packages": sorted(self.packages)},
            sort_keys=True,
        ).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Image:
    name: str
    rootfs: Path
    digest: str


# The Python that each Debian release ships; images are named after it (python3.11, ...).
PYTHON_BY_SUITE = {"bookworm": "3.11", "trixie": "3.13"}
# The name requests use when they do not care which Python: the host release's one.
DEFAULT_IMAGE = "python3"


def default_recipes(suite: str) -> dict[str, ImageRecipe]:
    """Image recipes by name; DEFAULT_IMAGE is an alias of the release's Python image."""
    python = ImageRecipe(
        name=f"python{PYTHON_BY_SUITE.get(suite, '3')}",
        suite=suite,
        packages=("python3", "python3-numpy"),
    )
    return {python.name: python, DEFAULT_IMAGE: python}


def host_suite() -> str:
    """The Debian codename of this machine (images match the host's release by default)."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"') or "bookworm"
    except OSError:
        pass
    return "bookworm"


def host_mirror() -> str:
    """The Debian mirror the host's apt already uses (no other network is reachable here)."""
    candidates = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if not words or not (words[0] == "URIs:" or words[0] == "deb"):
                continue
            for word in words[1:]:
                if word.startswith(("http://", "https://")) and "security" not in word:
                    return word
    return "http://deb.debian.org/debian"


def image_named(images_dir: Path, name: str) -> Image:
    """The built image a request names (DEFAULT_IMAGE, python3.11, ...).

    Raises:
        InvalidRequest: no recipe has that name.
        ImageError: the image is not built; the message says how to build it.
    """
    recipe = default_recipes(host_suite()).get(name)
    if recipe is None:
        raise InvalidRequest("image", f"unknown image {name!r}")
    return load_image(images_dir, recipe)


def image_dir(images_dir: Path, recipe: ImageRecipe) -> Path:
    return images_dir / f"{recipe.name}-{recipe.key}"


def load_image(images_dir: Path, recipe: ImageRecipe) -> Image:
    """The cached image for `recipe`; ImageError (with the command to build it) if there is none."""
    base = image_dir(images_dir, recipe)
    try:
        manifest = json.loads((base / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise ImageError(
            f"sandbox image {recipe.name!r} is not built in {images_dir}; "
            f"build it with: python -m sandbox build-image --images-dir {images_dir}"
        ) from exc
    return Image(name=recipe.name, rootfs=base / "rootfs", digest=manifest["digest"])


def build_image(
    images_dir: Path, recipe: ImageRecipe, *, mirror: str | None = None, deb_cache: Path | None = None, log=print
) -> Image:
    """Build the image unless an identical recipe is cached; safe to call from parallel processes.
    Downloaded packages are kept in `deb_cache` (default: images_dir/.debs) for the next build;
    debootstrap checks each against the mirror's signed index before it uses it."""
    images_dir.mkdir(parents=True, exist_ok=True)
    deb_cache = (deb_cache or images_dir / ".debs").resolve()
    deb_cache.mkdir(exist_ok=True)
    with open(images_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return load_image(images_dir, recipe)
        except ImageError:
            pass
        if shutil.which("debootstrap") is None:
            raise ImageError("debootstrap is not installed: apt-get install debootstrap")
        if os.geteuid() != 0:
            raise ImageError("building a sandbox image needs root (debootstrap)")
        started = time.monotonic()
        log(f"building sandbox image {recipe.name} ({recipe.suite}: {', '.join(recipe.packages)})…")
        work = Path(tempfile.mkdtemp(prefix=f".{recipe.name}-", dir=images_dir))
        try:
            rootfs = work / "rootfs"
            cmd = [
                "debootstrap",
                "--variant=minbase",
                f"--cache-dir={deb_cache}",
                f"--include={','.join(recipe.packages)}",
                recipe.suite,
                str(rootfs),
                mirror or host_mirror(),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stdout + proc.stderr)[-2000:]
                raise ImageError(f"debootstrap failed ({proc.returncode}): {tail}")
            _trim(rootfs)
            forget_the_host(rootfs)
            _undate_shadow(rootfs)
            digest = tree_digest(rootfs)
            manifest = {
                "name": recipe.name,
                "suite": recipe.suite,
                "packages": list(recipe.packages),
                "key": recipe.key,
                "digest": digest,
                "built_at": time.time(),
            }
            (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
            target = image_dir(images_dir, recipe)
            if target.exists():
                shutil.rmtree(target)
            work.rename(target)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
        log(f"built {recipe.name} in {time.monotonic() - started:.0f}s, digest {digest[:19]}")
        return load_image(images_dir, recipe)


def _trim(rootfs: Path) -> None:
    for rel in TRIM_PATHS:
        target = rootfs / rel
        if target.is_dir():
            shutil.rmtree(target)
            target.mkdir()
    # Precompile the standard library so every run does not pay for it (and cannot: root is ro).
    subprocess.run(
        ["chroot", str(rootfs), "python3", "-m", "compileall", "-q", "-j0", "/usr/lib"],
        capture_output=True,
    )


def forget_the_host(rootfs: Path) -> None:
    """Remove what debootstrap copied from the building host: its resolver, its name, its apt mirror
    (a mirror URL may carry credentials). Sandboxes have no network, so none of it is missed."""
    etc = rootfs / "etc"
    for rel in ("resolv.conf", "hosts", "mailname", "apt/sources.list"):
        (etc / rel).unlink(missing_ok=True)
    for path in (etc / "apt" / "sources.list.d").glob("*"):
        path.unlink()
    (etc / "hostname").write_text("sandbox\n")


def _undate_shadow(rootfs: Path) -> None:
    """Empty each account's "last password change" (days since 1970, the build's day): with it, two
    builds of one recipe on different days differed. Empty means no password ageing; nobody logs in."""
    shadow = rootfs / "etc" / "shadow"
    lines = []
    for line in shadow.read_text().splitlines():
        fields = line.split(":")
        if len(fields) > 2:
            fields[2] = ""
        lines.append(":".join(fields))
    shadow.write_text("\n".join(lines) + "\n")


def tree_digest(root: Path) -> str:
    """sha256 over every path, mode, link target and file content, in sorted order."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            h.update(f"{rel}\0{st.st_mode:o}\0".encode())
            if os.path.islink(path):
                h.update(os.readlink(path).encode())
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
            h.update(b"\0")
    return "sha256:" + h.hexdigest()
