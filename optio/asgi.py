"""ASGI entry point: HTTP through Django, WebSockets through Channels.

Production: `uvicorn optio.asgi:application`.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "optio.settings")
django_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from optio.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_app,
        # Token auth happens in the consumers; the session stack lets the dashboard's cookie work too.
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
