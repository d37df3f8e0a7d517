"""Embedded mode: a Celery worker and Celery beat in background threads of this process.

With no REDIS_URL the broker is kombu's in-memory transport, which only reaches threads
of the same process, so the worker and beat must live here, beside uvicorn.
"""

from __future__ import annotations

import gc
import logging
import threading

from celery.beat import EmbeddedService
from celery.worker import WorkController

from optio.celery import app

log = logging.getLogger(__name__)


class EmbeddedCelery:
    def __init__(self, concurrency: int = 4, beat: bool = True):
        self.concurrency = concurrency
        self.with_beat = beat
        self.worker: WorkController | None = None
        self.beat = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> EmbeddedCelery:
        self.worker = WorkController(
            app=app,
            pool="threads",
            concurrency=self.concurrency,
            hostname="embedded@optio",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="WARNING",
            ready_callback=lambda consumer=None: self._ready.set(),
        )
        self._thread = threading.Thread(target=self.worker.start, name="celery-worker", daemon=True)
        self._thread.start()
        if self.with_beat:
            self.beat = EmbeddedService(app, thread=True, scheduler_cls=app.conf.beat_scheduler)
            self.beat.start()
        self._ready.wait(timeout=30)
        log.info("embedded Celery worker (%s threads)%s started", self.concurrency, " and beat" if self.beat else "")
        return self

    def stop(self) -> None:
        if self.beat is not None:
            self.beat.stop()
        if self.worker is not None:
            self.worker.stop(in_sighandler=False)
        if self._thread is not None:
            self._thread.join(timeout=10)
        # The pool's threads are gone, but their database connections live on in unreachable
        # thread-locals until collected; collect now so PostgreSQL sessions end with the worker.
        gc.collect()
