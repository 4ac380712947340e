"""Websocket routes. The catch-all closes unknown paths cleanly (an unrouted path would make
daphne answer HTTP 500)."""

from django.urls import re_path

from evaluations.live.consumers import RejectConsumer, RunConsumer, RunListConsumer

websocket_urlpatterns = [
    re_path(r"^ws/runs/(?P<run_id>[0-9]{1,18})/$", RunConsumer.as_asgi()),
    re_path(r"^ws/runs/$", RunListConsumer.as_asgi()),
    re_path(r"", RejectConsumer.as_asgi()),
]
