"""Websocket routes. The catch-all closes unknown paths cleanly (an unrouted path would make
daphne answer HTTP 500)."""

from django.urls import re_path

from evaluations.live.consumers import RejectConsumer, RunConsumer, RunListConsumer
from evaluations.monitoring.websocket_metrics import counted

websocket_urlpatterns = [
    re_path(r"^ws/runs/(?P<run_id>[0-9]{1,18})/$", counted("run", RunConsumer.as_asgi())),
    re_path(r"^ws/runs/$", counted("run_list", RunListConsumer.as_asgi())),
    re_path(r"", counted("unknown", RejectConsumer.as_asgi())),
]
