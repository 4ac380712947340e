"""Websocket authentication and Origin checks, in front of the consumers.

Browsers authenticate with their session cookie and always send an Origin, whose scheme, host and
port must be one of CRUCIBLE_ALLOWED_ORIGINS (otherwise any site could open a socket with the
visitor's cookie). Scripts send
`Authorization: Token <key>` in the handshake headers — never in the URL, so it is not logged.
"""

from __future__ import annotations

from urllib.parse import urlparse

from channels.auth import AuthMiddleware, get_user
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from evaluations.live.protocol import CLOSE_FORBIDDEN_ORIGIN, CLOSE_TRY_AGAIN, CLOSE_UNAUTHENTICATED
from evaluations.live.sync import in_thread
from evaluations.unavailable import unavailable_service


@in_thread
def _token_user(key: str):
    """(user, token id), or None for unknown or revoked keys and inactive users."""
    from evaluations.accounts import tokens

    try:
        user, token = tokens.token_user(key)
    except tokens.TokenRejected:
        return None
    return user, token.pk


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_key(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin, the default port filled in; None if it is not one."""
    try:
        parts = urlparse(origin.strip().lower())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname, port


def origin_allowed(origin: str) -> bool:
    key = _origin_key(origin)
    return key is not None and any(key == _origin_key(allowed) for allowed in settings.CRUCIBLE_ALLOWED_ORIGINS)


class TokenAndOriginMiddleware:
    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers", []))
        scope = dict(scope)
        auth = headers.get(b"authorization", b"").decode("latin-1")
        origin = headers.get(b"origin", b"").decode("latin-1")
        if auth:
            keyword, _, key = auth.partition(" ")
            try:
                found = await _token_user(key.strip()) if keyword == "Token" and key.strip() else None
            except Exception as exc:
                if unavailable_service(exc) is None:
                    raise
                found, scope["crucible_reject"] = None, CLOSE_TRY_AGAIN
            if found is None:
                scope.setdefault("crucible_reject", CLOSE_UNAUTHENTICATED)
            else:
                scope["user"], scope["crucible_token_id"] = found
        if origin:
            if not origin_allowed(origin):
                scope["crucible_reject"] = CLOSE_FORBIDDEN_ORIGIN
        elif not auth:
            # A session cookie without an Origin: browsers always send one, so this client hides
            # where it comes from; refuse the cookie. (No cookie either: just not authenticated.)
            user = scope.get("user")
            if user is not None and user.is_authenticated:
                scope["crucible_reject"] = scope.get("crucible_reject", CLOSE_FORBIDDEN_ORIGIN)
        return await self.inner(scope, receive, send)


class SessionUserMiddleware(AuthMiddleware):
    """Channels' session user, read in_thread (channels reads it on the one thread of all sockets)."""

    async def resolve_scope(self, scope):
        try:
            scope["user"]._wrapped = await in_thread(get_user.func)(scope)
        except Exception as exc:
            if unavailable_service(exc) is None:
                raise
            scope["user"]._wrapped = AnonymousUser()
            scope["crucible_reject"] = CLOSE_TRY_AGAIN


def WebsocketAuthStack(inner):  # noqa: N802 - reads like the Channels stacks it wraps
    # channels.auth.AuthMiddlewareStack, with the session user read in_thread.
    return CookieMiddleware(SessionMiddleware(SessionUserMiddleware(TokenAndOriginMiddleware(inner))))
