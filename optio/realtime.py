"""Channel groups: sending from synchronous code, and fanning out inside a server process.

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
import weakref
from typing import Protocol

from channels.layers import get_channel_layer

from optio.events import json_text

log = logging.getLogger(__name__)

SEND_TIMEOUT = 5.0

WireFrame = list  # [seq, json text]: serialised once by the sender, not once per consumer


def wire(frame: dict) -> WireFrame:
    """A frame as it travels in a channel-layer message: its seq and its JSON text."""
    return [frame["seq"], json_text(frame)]


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
    message = dict(message, group=group)  # the receiving Hub routes on it
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


class Member(Protocol):
    def offer(self, message: dict) -> None: ...


class Hub:
    """Receiving side: one channel-layer channel per process (per event loop) for every
    WebSocket consumer in it.

    Channels gives each consumer its own channel and runs its own receive loop, so a frame
    for 500 clients costs 500 channel messages, 500 decodes and a few task switches each.
    The hub joins each group once, decodes each message once, and hands it to the local
    members by a plain method call (`offer`: queue it and wake the member's writer).
    Messages carry their group name (send_to_group adds it), which is how the hub routes.
    """

    _hubs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self, layer) -> None:
        self.layer = layer
        self.channel: str | None = None
        self.members: dict[str, set[Member]] = {}
        self._lock = asyncio.Lock()
        self._pump: asyncio.Task | None = None

    @classmethod
    def current(cls) -> Hub:
        loop, layer = asyncio.get_running_loop(), get_channel_layer()
        hub = cls._hubs.get(loop)
        if hub is None or hub.layer is not layer:  # settings changed the layer (tests)
            hub = cls._hubs[loop] = cls(layer)
        return hub

    async def join(self, group: str, member: Member) -> None:
        """Returns once messages sent to `group` from now on will reach `member`."""
        async with self._lock:
            if self.channel is None:
                self.channel = await self.layer.new_channel()
                self._pump = asyncio.ensure_future(self._run())
            members = self.members.setdefault(group, set())
            members.add(member)
            if len(members) == 1:
                await self.layer.group_add(group, self.channel)

    async def leave(self, group: str, member: Member) -> None:
        async with self._lock:
            members = self.members.get(group)
            if members is None:
                return
            members.discard(member)
            if not members:
                del self.members[group]
                await self.layer.group_discard(group, self.channel)

    async def _run(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # a broken connection to Redis: keep serving once it is back
                log.warning("channel layer receive failed; retrying", exc_info=True)
                await asyncio.sleep(1)
                continue
            for member in tuple(self.members.get(message.get("group"), ())):
                try:
                    member.offer(message)
                except Exception:
                    log.exception("could not hand a message to a WebSocket consumer")
