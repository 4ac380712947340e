"""Times each HTTP request for /metrics, labelled by the URL pattern it resolved to, never its raw
path: /runs/1/ and /runs/2/ are one route, and made-up paths cannot grow the label set."""

from __future__ import annotations

import time

from evaluations.monitoring import metrics

UNMATCHED = "unmatched"  # no URL pattern matched (a 404 before any view)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetricsMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        started = time.monotonic()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        metrics.HTTP_REQUEST_SECONDS.labels(
            route=f"/{match.route}" if match is not None else UNMATCHED,
            method=request.method if request.method in METHODS else "other",
            status=str(response.status_code),
        ).observe(time.monotonic() - started)
        return response
