"""GET /metrics: the Prometheus text exposition, for admins' API tokens and the scrape addresses an
operator allows (CRUCIBLE_METRICS_ALLOWED_ADDRESSES); anyone else gets 403."""

from __future__ import annotations

import ipaddress
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework.exceptions import AuthenticationFailed

from evaluations.accounts.audit import client_ip
from evaluations.accounts.permissions import allowed
from evaluations.api.auth import ApiTokenAuthentication
from evaluations.monitoring.scrape import metrics_exposition

FORBIDDEN = (
    "/metrics answers an admin's API token (Authorization: Token <key>) or a scrape address listed in "
    "CRUCIBLE_METRICS_ALLOWED_ADDRESSES.\n"
)


@require_safe
def metrics_view(request) -> HttpResponse:
    if not _may_scrape(request):
        return HttpResponse(FORBIDDEN, status=403, content_type="text/plain; charset=utf-8")
    return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE_LATEST)


def _may_scrape(request) -> bool:
    address = client_ip(request)
    if address is not None and any(
        ipaddress.ip_address(address) in net
        for net in scrape_networks(tuple(settings.CRUCIBLE_METRICS_ALLOWED_ADDRESSES))
    ):
        return True
    try:
        found = ApiTokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return False  # a bad or revoked token is refused like no token: 403, never 401 or 500
    return found is not None and allowed(found[0], "evaluations.administer")


@cache
def scrape_networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"CRUCIBLE_METRICS_ALLOWED_ADDRESSES: {entry!r} is not an IP address or network (e.g. 10.0.0.0/24)"
            ) from None
    return tuple(networks)
