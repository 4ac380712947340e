"""One webhook POST: to the addresses the guard checked (never resolved again), signed, with a
timeout for the whole exchange and at most a small part of the answer read."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import socket
import ssl
import time
from dataclasses import dataclass

from evaluations.webhooks.guard import Target, WebhookRefused, target_resolve

SIGNATURE_HEADER = "X-Crucible-Signature"
TIMESTAMP_HEADER = "X-Crucible-Timestamp"


def signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with the user's secret of "<timestamp>." followed by the body."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str
    duration_seconds: float

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _Pinned(http.client.HTTPConnection):
    def __init__(self, target: Target, address: str, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedTls(http.client.HTTPSConnection):
    def __init__(self, target: Target, address: str, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def webhook_post(
    *,
    url: str,
    body: bytes,
    headers: dict[str, str],
    secret: str,
    allow_private: bool,
    timeout: float,
    max_response_bytes: int,
) -> Outcome:
    """POST `body`, signed; the outcome, never an exception (a refusal or failure is its error)."""
    started = time.monotonic()
    try:
        target = target_resolve(url, allow_private=allow_private)
    except WebhookRefused as exc:
        return Outcome(None, f"refused: the URL {exc}", 0.0)
    timestamp = str(int(time.time()))
    sent = {
        **headers,
        "Content-Type": "application/json",
        "User-Agent": "Crucible-Webhook/1",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret=secret, timestamp=timestamp, body=body),
    }
    error = ""
    for address in target.addresses:  # the next one only if this one cannot be reached
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            error = error or f"no answer within {timeout:g} s"
            break
        kind = _PinnedTls if target.scheme == "https" else _Pinned
        connection = kind(target, address, remaining)
        try:
            connection.request("POST", target.path, body=body, headers=sent)
            response = connection.getresponse()
            _read_some(response, max_response_bytes, deadline=started + timeout)
            return Outcome(response.status, "", time.monotonic() - started)
        except (OSError, http.client.HTTPException) as exc:
            error = f"{address}: {type(exc).__name__}: {exc}"[:500]
        finally:
            connection.close()
    return Outcome(None, error or "no address to connect to", time.monotonic() - started)


def _read_some(response: http.client.HTTPResponse, limit: int, *, deadline: float) -> None:
    """Read at most `limit` bytes of the answer (its content is not used) before the deadline."""
    left = limit
    while left > 0 and time.monotonic() < deadline:
        chunk = response.read1(min(left, 16384))
        if not chunk:
            return
        left -= len(chunk)
