import os

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand


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
        self.stdout.write(f"Optio serving on http://{host}:{port} ({'embedded' if embedded else 'production'} mode)")
        try:
            uvicorn.run("optio.asgi:application", host=host, port=port, log_level="warning", lifespan="off")
        finally:
            if embedded:
                embedded.stop()
