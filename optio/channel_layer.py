"""An in-process channel layer that is safe to call from any thread's event loop.

Embedded mode runs the Celery worker in a thread with its own event loop (async_to_sync),
while WebSocket consumers wait on uvicorn's loop. The stock InMemoryChannelLayer puts the
message into an asyncio.Queue owned by the consumer's loop without waking it, so a
group_send from the worker thread is only noticed by chance. Here every receiver is a
future on its own loop, and senders resolve it with `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import random
import string
import threading
import time
from collections import deque
from copy import deepcopy

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer


class _Mailbox:
    __slots__ = ("messages", "waiters")

    def __init__(self) -> None:
        self.messages: deque[tuple[float, dict]] = deque()
        self.waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = deque()


class ThreadSafeInMemoryChannelLayer(BaseChannelLayer):
    extensions = ["groups", "flush"]

    def __init__(self, expiry=60, group_expiry=86400, capacity=1000, channel_capacity=None, **kwargs):
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity, **kwargs)
        self._lock = threading.Lock()
        self._boxes: dict[str, _Mailbox] = {}
        self._groups: dict[str, set[str]] = {}

    async def new_channel(self, prefix="specific."):
        return f"{prefix}.inmemory!" + "".join(random.choices(string.ascii_letters, k=12))

    async def send(self, channel, message):
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        self._deliver(channel, deepcopy(message), raise_full=True)

    def _deliver(self, channel: str, message: dict, raise_full: bool) -> None:
        with self._lock:
            box = self._boxes.setdefault(channel, _Mailbox())
            while box.waiters:
                loop, future = box.waiters.popleft()
                if not future.done() and not loop.is_closed():
                    loop.call_soon_threadsafe(self._resolve, channel, future, message)
                    return
            if len(box.messages) >= self.get_capacity(channel):
                if raise_full:
                    raise ChannelFull(channel)
                return
            box.messages.append((time.monotonic() + self.expiry, message))

    def _resolve(self, channel: str, future: asyncio.Future, message: dict) -> None:
        # Runs on the receiver's loop. A receiver cancelled in the meantime must not lose it.
        if future.done():
            self._deliver(channel, message, raise_full=False)
        else:
            future.set_result(message)

    async def receive(self, channel):
        self.require_valid_channel_name(channel)
        loop = asyncio.get_running_loop()
        with self._lock:
            box = self._boxes.setdefault(channel, _Mailbox())
            now = time.monotonic()
            while box.messages and box.messages[0][0] < now:
                box.messages.popleft()
            if box.messages:
                return box.messages.popleft()[1]
            future = loop.create_future()
            box.waiters.append((loop, future))
        try:
            return await future
        finally:
            with self._lock:
                box = self._boxes.get(channel)
                if box is not None:
                    try:
                        box.waiters.remove((loop, future))
                    except ValueError:
                        pass
                    if not box.waiters and not box.messages:
                        self._boxes.pop(channel, None)

    async def group_add(self, group, channel):
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        with self._lock:
            self._groups.setdefault(group, set()).add(channel)

    async def group_discard(self, group, channel):
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        with self._lock:
            members = self._groups.get(group)
            if members is not None:
                members.discard(channel)
                if not members:
                    self._groups.pop(group, None)

    async def group_send(self, group, message):
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        with self._lock:
            members = list(self._groups.get(group, ()))
        for channel in members:
            self._deliver(channel, deepcopy(message), raise_full=False)

    async def flush(self):
        with self._lock:
            self._boxes.clear()
            self._groups.clear()

    async def close(self):
        pass
