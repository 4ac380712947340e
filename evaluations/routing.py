"""Websocket routes. The live-run consumer arrives with the live-runs work; until then every
websocket path is closed cleanly (an unrouted path would make daphne answer HTTP 500)."""

from django.urls import re_path

from evaluations.consumers import RejectConsumer

websocket_urlpatterns = [
    re_path(r"^.*$", RejectConsumer.as_asgi()),
]
