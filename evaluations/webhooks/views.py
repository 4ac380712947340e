"""The profile page's webhook forms, and the API's secret endpoint: thin views over services."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from evaluations.api import openapi
from evaluations.api.throttling import rate_limited
from evaluations.webhooks import services


@login_required
@require_POST
@rate_limited
def webhook_settings_view(request):
    try:
        url = request.POST.get("webhook_url", "").strip()
        services.webhook_settings_set(user=request.user, url=url, request=request)
    except ValidationError as exc:
        messages.error(request, f"Webhook URL not saved: {'; '.join(exc.messages)}")
        return redirect("profile")
    messages.success(request, "Webhook URL saved: runs that name no callback of their own are told there.")
    return redirect("profile")


@login_required
@require_POST
@rate_limited
def webhook_secret_view(request):
    secret = services.webhook_secret_rotate(user=request.user, request=request)
    response = render(request, "evaluations/webhook_secret.html", {"secret": secret})
    add_never_cache_headers(response)
    return response


@extend_schema_serializer(component_name="WebhookSecret")
class WebhookSecretOutput(serializers.Serializer):
    secret = serializers.CharField(help_text="shown this once: deliveries are signed with it (docs/webhooks.md)")


class WebhookSecretApi(APIView):
    @extend_schema(
        operation_id="webhook_secret_create",
        summary="Make a new webhook signing secret (the old one stops at once)",
        tags=["webhooks"],
        request=None,
        parameters=openapi.HEADERS,
        responses=openapi.responses({201: OpenApiResponse(WebhookSecretOutput, description="the secret, once")}),
    )
    def post(self, request):
        secret = services.webhook_secret_rotate(user=request.user, request=request)
        response = Response({"secret": secret}, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response
