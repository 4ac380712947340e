"""Gzip for static files (scripts, styles, the vendored editor and plots) when the browser accepts it.

WhiteNoise serves static/ straight from the repository here (no collectstatic step, so no .gz files
beside them): this compresses its responses on the way out. Only /static/: pages carry CSRF tokens
and user data, which compression would expose to length-based attacks (BREACH)."""

from __future__ import annotations

from django.conf import settings
from django.middleware.gzip import GZipMiddleware


class StaticGZipMiddleware(GZipMiddleware):
    def process_response(self, request, response):
        if not request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
            return response
        return super().process_response(request, response)
