"""Where a webhook may go: http(s) URLs whose host resolves only to public addresses, unless
CRUCIBLE_WEBHOOK_ALLOW_PRIVATE lets loopback, link-local and private ones through. The addresses
checked are the ones connected to (pinned), so a name that resolves again elsewhere changes nothing."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_CHARS = 2000


class WebhookRefused(Exception):
    """This URL may not be called; the message says why, in words for its owner."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # with its query
    addresses: tuple[str, ...]  # every address the host resolved to, all allowed


def url_check(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http(s) URL; WebhookRefused for anything else."""
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS or any(c in url for c in "\r\n\t\x00 "):
        raise WebhookRefused(f"must be an http(s):// URL of at most {MAX_URL_CHARS} characters, without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(f"is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("must be an http:// or https:// URL with a host name")
    if parts.username or parts.password:
        raise WebhookRefused("must not carry a user name or password: check the signature instead")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def address_problem(address: str) -> str | None:
    """Why a webhook may not connect to this address (None: it is public)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for test, what in (
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "not public"),
    ):
        if test:
            return what
    return None


def target_resolve(url: str, *, allow_private: bool) -> Target:
    """Resolve the URL's host; WebhookRefused if it does not resolve or any address is not allowed."""
    scheme, host, port, path = url_check(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookRefused(f"its host {host!r} does not resolve ({exc})") from None
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        for address in addresses:
            problem = address_problem(address)
            if problem:
                raise WebhookRefused(
                    f"its host {host!r} resolves to {address}, a {problem} address: webhooks go to public "
                    "addresses only (an admin can allow others with CRUCIBLE_WEBHOOK_ALLOW_PRIVATE)"
                )
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=addresses)
