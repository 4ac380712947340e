"""Batches and webhook deliveries in the admin: read-only (their pages and the API act on them)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from evaluations.admin.site import ReadOnlyAdmin
from evaluations.models import Batch, WebhookDelivery, url_origin


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "owner", "created", "page")
    list_filter = (("owner", admin.RelatedOnlyFieldListFilter), "created")
    search_fields = ("=id", "name", "owner__username")
    list_select_related = ("owner",)
    # The submission's code can be large (the batch's page links to its runs); the callback URL is
    # its owner's whole (a path or query may hold a token).
    exclude = ("submission", "callback_url")
    readonly_fields = ("callback",)

    @admin.display(description="callback URL")
    def callback(self, batch) -> str:
        return url_origin(batch.callback_url) if batch.callback_url else "–"

    @admin.display(description="page")
    def page(self, batch) -> str:
        return format_html('<a href="{}">Batch #{}</a>', reverse("batch-detail", args=[batch.pk]), batch.pk)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("id", "run_id", "attempt", "url_origin", "at", "status_code", "error")
    list_filter = ("status_code", "at")
    search_fields = ("=run__id",)
    # The whole URL is its owner's: a path or query may hold a token.
    exclude = ("url",)
    readonly_fields = ("url_origin",)
