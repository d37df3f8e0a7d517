"""Sending to channel groups from synchronous code (views, Celery tasks, the dispatcher).

`async_to_sync(layer.group_send)` from a thread without an event loop runs each call on a
brand-new loop, and channels-redis keeps one Redis connection per loop, so every send
would open and close a connection. Instead one daemon thread per process runs a loop for
the layer, and senders hand it their coroutine and wait for the result.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

SEND_TIMEOUT = 5.0


class _LoopThread:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid: int | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            # A forked child (Celery prefork) inherits the object but not the thread.
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="optio-realtime", daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop


_loop_thread = _LoopThread()


def send_to_group(group: str, message: dict, *, raise_errors: bool = False, timeout: float = SEND_TIMEOUT) -> None:
    """Send `message` to every consumer in `group`. Live frames are best effort by default:
    clients recover anything missed from the database; `raise_errors` lets a caller that
    retries (the dispatcher) see the failure instead."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    try:
        if running is not None:  # called from async code: don't block its loop
            running.create_task(layer.group_send(group, message))
            return
        future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _loop_thread.loop())
        try:
            future.result(timeout)
        except BaseException:
            future.cancel()
            raise
    except Exception:
        if raise_errors:
            raise
        log.warning("could not send to channel group %s", group, exc_info=True)
