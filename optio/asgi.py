"""ASGI entry point: HTTP through Django, WebSockets through Channels.

Production: `uvicorn optio.asgi:application`.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "optio.settings")
django_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up first)

from optio.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_app,
        # The consumers authenticate (?token= or the session cookie) once, at the handshake.
        # No AuthMiddlewareStack: its session middleware would wrap every frame sent.
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
