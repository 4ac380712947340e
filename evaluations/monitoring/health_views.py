"""/healthz (liveness: this process answers) and /readyz (readiness: evaluations/monitoring/health.py).

Neither needs a login, and neither raises while the database or Redis is down: /readyz says which
check failed instead of the unavailable middleware's general 503 page.
"""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from evaluations.monitoring import health


@never_cache
@require_safe
def healthz(request) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request) -> JsonResponse:
    results = health.readiness_checks()
    ready = all(result.ok for result in results)
    return JsonResponse(health.readiness_report(results), status=200 if ready else 503)
