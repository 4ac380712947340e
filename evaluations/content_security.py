"""The Content-Security-Policy of every response: scripts, styles and everything else from this
site only, no inline code, no framing. Pages keep all JavaScript and CSS in static/ (the browser tests
run under this policy). Django 5.2 has none built in; SecurityMiddleware sends the other headers."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

# 'self' covers the page's own ws:// or wss:// origin for the live sockets. data: images are
# the SVG icons Swagger UI and Django's admin draw inline.
POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware(MiddlewareMixin):  # sync and async, like Django's own
    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response.headers.setdefault("Content-Security-Policy", POLICY)
        return response
