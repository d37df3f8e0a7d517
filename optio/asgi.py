"""ASGI entry point: HTTP through Django, WebSockets through Channels.

Production: `uvicorn optio.asgi:application`.
"""

import gc
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

# What start-up created lives as long as the process. Freezing it (after collecting what is
# already garbage) keeps it out of every later full collection: with ~130k start-up objects in
# them, full collections took 50-90 ms in the middle of an Issues page (bench_issues).
gc.collect()
gc.freeze()
