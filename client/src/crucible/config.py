"""Where the client finds its server and token: CRUCIBLE_URL and CRUCIBLE_TOKEN in the environment
first, else the file `crucible login` wrote (config.json in the user's config dir, mode 0600)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from crucible.errors import ConfigError


@dataclass(frozen=True)
class Config:
    url: str
    token: str = ""
    source: str = ""  # where it came from, for messages

    def __repr__(self) -> str:
        return f"Config(url={self.url!r}, source={self.source!r})"  # never the token


def config_dir() -> Path:
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "crucible"
    if sys.platform == "darwin" and not os.environ.get("XDG_CONFIG_HOME"):
        return Path.home() / "Library" / "Application Support" / "crucible"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "crucible"


def config_path() -> Path:
    return config_dir() / "config.json"


def load() -> Config:
    """The URL and token to use; ConfigError says how to provide what is missing."""
    stored = _read_file()
    url = os.environ.get("CRUCIBLE_URL") or stored.get("url", "")
    token = os.environ.get("CRUCIBLE_TOKEN") or stored.get("token", "")
    source = "the environment" if os.environ.get("CRUCIBLE_TOKEN") else str(config_path())
    if not url or not token:
        missing = " and ".join(name for name, value in (("a URL", url), ("a token", token)) if not value)
        raise ConfigError(
            f"no Crucible server configured ({missing} missing): run `crucible login URL` once, "
            "or set CRUCIBLE_URL and CRUCIBLE_TOKEN"
        )
    return Config(url=url.rstrip("/"), token=token, source=source)


def save(url: str, token: str) -> Path:
    """Store the URL and token for later commands: readable by this user only (0600, dir 0700)."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Created 0600 from the start (not chmod-ed after), so the token is never readable by others.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"url": url.rstrip("/"), "token": token}, f)
            f.write("\n")
        os.chmod(tmp, 0o600)  # in case a umask or ACL widened it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _read_file() -> dict[str, str]:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; run `crucible login URL` again") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a Crucible config; run `crucible login URL` again")
    return {k: v for k, v in data.items() if isinstance(v, str)}
