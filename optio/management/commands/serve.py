import os
import signal

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand


class _Stop(Exception):
    """SIGINT/SIGTERM, re-raised by uvicorn after its graceful shutdown."""


def _stop(signum, frame):
    raise _Stop


class Command(BaseCommand):
    help = "Serve Optio. Embedded mode (no REDIS_URL) also runs a Celery worker and beat in this process."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, host, port, **options):
        embedded = None
        if settings.EMBEDDED:
            from optio.embedded import EmbeddedCelery

            embedded = EmbeddedCelery().start()
        mode = "embedded" if embedded else "production"
        self.stdout.write(f"Optio serving on http://{host}:{port} ({mode} mode); Ctrl-C stops it.")
        # uvicorn shuts down gracefully on a signal, restores the previous handler and raises
        # the signal again; with these handlers that ends here instead of killing the process
        # before the embedded worker and beat threads are stopped.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _stop)
        try:
            # Per-message deflate costs ~30 µs of CPU per WebSocket frame (bench_spine); frames are small.
            uvicorn.run(
                "optio.asgi:application",
                host=host,
                port=port,
                log_level="warning",
                lifespan="off",
                ws_per_message_deflate=False,
            )
        except _Stop:
            pass
        finally:
            if embedded:
                embedded.stop()
        self.stdout.write("Optio stopped.")
