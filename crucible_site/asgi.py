"""ASGI entry point for daphne: HTTP through Django, websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crucible_site.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from evaluations.live.auth import WebsocketAuthStack  # noqa: E402
from evaluations.live.routing import websocket_urlpatterns  # noqa: E402
from evaluations.monitoring.logging import daphne_access_log_through_logging  # noqa: E402

daphne_access_log_through_logging()  # daphne's access lines follow CRUCIBLE_LOG_FORMAT too

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": WebsocketAuthStack(URLRouter(websocket_urlpatterns)),
    }
)
