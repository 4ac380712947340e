"""`Authorization: Token <key>` for the API, with the hashed tokens of evaluations/accounts/tokens.py."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from evaluations.accounts import tokens


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None  # not ours: another scheme, or a browser session
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "invalid token header: send exactly 'Authorization: Token <key>', the key without spaces"
            )
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("invalid token: a key is plain ASCII") from None
        try:
            user, token = tokens.token_user(key)
        except tokens.TokenRejected as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return user, token  # request.auth is the ApiToken: throttling counts per token

    def authenticate_header(self, request) -> str:
        # Makes unauthenticated API requests 401 (with WWW-Authenticate), not 403.
        return self.keyword
