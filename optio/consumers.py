"""WebSocket consumers: /ws/events and /ws/logs/<taskId> (DESIGN.md, "WebSockets").

Frames are JSON objects, one per text frame.

- /ws/events: every event envelope plus `seq`, the event's place in dispatch order
  (Event.stream_seq; optio/dispatch.py explains why it is not the insert order).
- /ws/logs/<taskId>: that task's log frames (`seq` = TaskLog.seq, per task) and its event
  envelopes (`seq` = stream_seq, as on /ws/events); an envelope is the frame with "event".

Query parameters:
- `token`: the REST API token. Without it the dashboard's session cookie is accepted, when
  the handshake's Origin (if any) is one of ALLOWED_HOSTS (no cross-site hijacking).
- `after` (/ws/events): resume after this event seq. Default: the last 20 events.
- `after` (/ws/logs): resume after this log seq. Default: the last `tail` lines (1000).
- `eventsAfter` (/ws/logs): resume the task's envelopes after this event seq. Default:
  the task's last 20 events.

Resume with no gap and no duplicate:
1. Join the channel group (through the process's Hub, optio/realtime.py) before reading
   anything, so every frame published from then on is queued for this consumer.
2. Backfill from the database in pages, remembering the last seq sent. A cursor beyond
   the newest number (a database was reset) is pulled back to it.
3. Forward queued and live frames: drop any seq at or below the last sent; send the next
   one; hold a frame that arrives early (two dispatchers can publish 8 before 7) until
   the gap fills, or after GAP_WAIT read the gap from the database. Numbers are handed out
   in commit order (stream_seq under a lock, TaskLog.seq under the task's row lock), so
   anything below a number that was published is already committed.
A task's envelopes on /ws/logs are a sparse subset of the stream, so each one that arrives
triggers a read of that task's events since the last sent instead.

Close codes: 4400 bad query parameter, 4401 missing/invalid credentials, 4404 unknown task,
4429 too many open connections for this user (counted per server process), 1009 an inbound
frame over MAX_INBOUND_BYTES (clients have nothing to send; inbound frames are ignored),
1013 the client fell MAX_BACKLOG messages behind (reconnect with ?after= to catch up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from importlib import import_module
from urllib.parse import parse_qs, urlsplit

from channels.auth import get_user
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db.models import Max
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host

from optio import events, logs
from optio.auth import user_for_token
from optio.models import Event, Task, TaskLog
from optio.realtime import Hub, WireFrame, wire

log = logging.getLogger(__name__)

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY = 4429
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013

DEFAULT_MAX_CONNECTIONS_PER_USER = 50
MAX_INBOUND_BYTES = 4096
EVENTS_BACKFILL = 20
LOGS_TAIL = 1000
MAX_TAIL = 10_000
PAGE = 500
MAX_BACKLOG = 2000  # channel messages queued for one client before it is dropped (1013)
GAP_WAIT = 0.5  # seconds an early frame waits for the one before it before we read the database

# Frames travel and are kept as [seq, json text] (optio.realtime.wire): serialised once by
# the sender, not once per connected client.
Frames = list[WireFrame]


def max_connections_per_user() -> int:
    return getattr(settings, "OPTIO_WS_MAX_CONNECTIONS_PER_USER", DEFAULT_MAX_CONNECTIONS_PER_USER)


class _Slots:
    """Open connections per user in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: Counter = Counter()

    def take(self, key, cap: int) -> bool:
        with self._lock:
            if self._open[key] >= cap:
                return False
            self._open[key] += 1
            return True

    def release(self, key) -> None:
        with self._lock:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]

    def count(self, key) -> int:
        with self._lock:
            return self._open[key]


slots = _Slots()


class BadParameter(ValueError):
    pass


class _Dense:
    """One dense numbered stream (1, 2, 3, …): frames leave in order, each once."""

    def __init__(self, consumer: _StreamConsumer, between: Callable[[int, int], Awaitable[Frames]]):
        self.consumer = consumer
        self.between = between  # frames with lo < seq < hi, in order, from the database
        self.last = 0
        self.early: dict[int, dict] = {}
        self.timer: asyncio.Task | None = None

    async def live(self, frames: Frames) -> None:
        send = self.consumer.send_frame
        for frame in frames:
            seq = frame[0]
            if seq <= self.last:
                continue  # already sent (backfill, or published twice)
            if seq == self.last + 1 and not self.early:  # the usual case: in order
                await send(frame)
                self.last = seq
            else:
                self.early.setdefault(seq, frame)
        if self.early:
            await self._flush()
            if self.early and self.timer is None:
                self.timer = asyncio.ensure_future(self._fill_gap_soon())

    async def _flush(self) -> None:
        while (frame := self.early.pop(self.last + 1, None)) is not None:
            await self.consumer.send_frame(frame)
            self.last = frame[0]

    async def _fill_gap_soon(self) -> None:
        try:
            await asyncio.sleep(GAP_WAIT)
            async with self.consumer.lock:
                if self.early:
                    upto = min(self.early)
                    for frame in await self.between(self.last, upto):
                        if frame[0] > self.last:
                            await self.consumer.send_frame(frame)
                            self.last = frame[0]
                    # A number the database does not hold was never used (pre-migration rows).
                    self.last = max(self.last, upto - 1)
                    await self._flush()
            again = bool(self.early)
        except Exception:  # the database or the socket failed: try again shortly
            log.warning("could not fill a gap in a WebSocket stream; retrying", exc_info=True)
            again = True
        self.timer = asyncio.ensure_future(self._fill_gap_soon()) if again else None

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


# websocket.receive never touches the database (see dispatch below).
_NO_DATABASE = frozenset({"websocket.receive"})


class _StreamConsumer(AsyncWebsocketConsumer):
    # No channel of its own: the process's Hub (optio/realtime.py) receives each group
    # message once and offers it to every local consumer of the group. An alias that names
    # no layer makes Channels skip the per-consumer channel and its receive loop.
    channel_layer_alias = "optio.hub"

    lock: asyncio.Lock
    ready = False
    slot = None
    overflowed = False
    writer: asyncio.Task | None = None

    def query(self, name: str) -> str | None:
        values = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get(name)
        return values[0] if values else None

    def number(self, name: str, maximum: int | None = None) -> int | None:
        raw = self.query(name)
        if raw is None or raw == "":
            return None
        if not raw.isdigit():
            raise BadParameter(f"{name} must be a whole number; got {raw[:40]!r}.")
        value = int(raw)
        return value if maximum is None else min(value, maximum)

    async def dispatch(self, message):
        # Channels runs close_old_connections() in Django's sync thread before every
        # message, a thread hop per inbound frame; inbound frames never touch the database.
        if message["type"] in _NO_DATABASE:
            await getattr(self, get_handler_name(message))(message)
        else:
            await super().dispatch(message)

    async def websocket_connect(self, message):
        self.lock = asyncio.Lock()
        self.inbox: deque[dict] = deque()
        self.wakeup = asyncio.Event()
        self.joined: list[str] = []
        # Accept first: a close before the handshake completes reaches a browser as HTTP 403,
        # and clients need the close code to tell "sign in again" from "reconnect".
        await self.accept()
        user = await self.authenticate()
        if user is None:
            await self.close(code=CLOSE_UNAUTHORIZED, reason="Send a valid API token as ?token= or sign in.")
            return
        try:
            params = self.parse()
        except BadParameter as exc:
            await self.close(code=CLOSE_BAD_REQUEST, reason=str(exc))
            return
        if not await self.prepare():
            return
        if not slots.take(user.pk, max_connections_per_user()):
            await self.close(code=CLOSE_TOO_MANY, reason="Too many open connections for this user; close some.")
            return
        self.slot = user.pk
        # Subscribe first: from here on every frame published to the groups is queued in
        # self.inbox, and forwarded (deduplicated) once the backfill has been sent.
        self.hub = Hub.current()
        for group in self.group_names():
            await self.hub.join(group, self)
            self.joined.append(group)
        async with self.lock:
            await self.backfill(**params)
        self.ready = True
        self.writer = asyncio.ensure_future(self.forward())

    def offer(self, message: dict) -> None:
        """Called by the Hub for each message to one of our groups (never blocks)."""
        if len(self.inbox) >= MAX_BACKLOG:
            # The client reads slower than frames arrive: drop it rather than grow without
            # bound; it reconnects with ?after= and catches up from the database.
            self.overflowed = True
        else:
            self.inbox.append(message)
        self.wakeup.set()

    async def forward(self) -> None:
        try:
            while True:
                await self.wakeup.wait()
                self.wakeup.clear()
                if self.overflowed:
                    await self.close(code=CLOSE_TRY_AGAIN, reason="Too far behind; reconnect with ?after= to catch up.")
                    return
                async with self.lock:
                    while self.inbox:
                        message = self.inbox.popleft()
                        if message["type"] == "log.frames":
                            await self.log_frames(message)
                        elif message["type"] == "event.frames":
                            await self.event_frames(message)
        except Exception:  # the client went away mid-send, or a read failed: end this socket
            log.info("WebSocket stream stopped", exc_info=True)
            with contextlib.suppress(Exception):
                await self.close(code=CLOSE_TRY_AGAIN, reason="Stream interrupted; reconnect with ?after=.")

    async def authenticate(self):
        token = self.query("token")
        if token is not None:  # a bad token is refused even when a session cookie is present
            return await database_sync_to_async(user_for_token)(token)
        if not self.origin_allowed():
            return None
        user = await self.session_user()
        return user if user is not None and user.is_authenticated and user.is_active else None

    async def session_user(self):
        """The dashboard user of the session cookie, read once here rather than through
        Channels' session middleware, which would wrap (and slow) every frame sent."""
        headers = dict(self.scope.get("headers", ()))
        key = parse_cookie(headers.get(b"cookie", b"").decode("latin-1")).get(settings.SESSION_COOKIE_NAME)
        if not key:
            return None
        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=key)
        return await get_user({"session": store})

    def origin_allowed(self) -> bool:
        origin = dict(self.scope.get("headers", ())).get(b"origin")
        if not origin:
            return True  # not a browser: cookies only come from one
        netloc = urlsplit(origin.decode("latin-1")).netloc
        domain, _ = split_domain_port(netloc)
        return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)

    async def receive(self, text_data=None, bytes_data=None):
        size = len(bytes_data) if bytes_data is not None else len((text_data or "").encode())
        if size > MAX_INBOUND_BYTES:
            await self.close(code=CLOSE_TOO_BIG, reason=f"Inbound frames are limited to {MAX_INBOUND_BYTES} bytes.")

    async def disconnect(self, code):
        self.ready = False
        if self.writer is not None:
            self.writer.cancel()
        for stream in self.streams():
            stream.cancel()
        for group in getattr(self, "joined", ()):
            await self.hub.leave(group, self)
        if self.slot is not None:
            slots.release(self.slot)
            self.slot = None

    async def send_frame(self, frame: WireFrame) -> None:
        # Straight to the server: this is the hot path when thousands of lines stream out.
        await self.base_send({"type": "websocket.send", "text": frame[1]})

    async def send_frames(self, frames: Frames) -> int:
        for frame in frames:
            await self.send_frame(frame)
        return frames[-1][0] if frames else 0

    # Filled in by the two consumers.
    def parse(self) -> dict:
        raise NotImplementedError

    async def prepare(self) -> bool:
        return True

    def group_names(self) -> list[str]:
        raise NotImplementedError

    async def backfill(self, **params) -> None:
        raise NotImplementedError

    def streams(self) -> list[_Dense]:
        return []


# Database reads (run in a thread through database_sync_to_async).


def _event_frames(qs) -> Frames:
    return [wire(events.frame(e)) for e in qs]


def _latest_stream_seq(task_id=None) -> int:
    qs = Event.objects.filter(stream_seq__isnull=False)
    if task_id is not None:
        qs = qs.filter(task_id=task_id)
    return qs.aggregate(m=Max("stream_seq"))["m"] or 0


def _events_after(after: int, limit: int, task_id=None) -> Frames:
    qs = Event.objects.filter(stream_seq__gt=after)
    if task_id is not None:
        qs = qs.filter(task_id=task_id)
    return _event_frames(qs.order_by("stream_seq")[:limit])


def _events_between(lo: int, hi: int, task_id=None) -> Frames:
    qs = Event.objects.filter(stream_seq__gt=lo, stream_seq__lt=hi)
    if task_id is not None:
        qs = qs.filter(task_id=task_id)
    return _event_frames(qs.order_by("stream_seq"))


def _events_tail(count: int, task_id=None) -> Frames:
    qs = Event.objects.filter(stream_seq__isnull=False)
    if task_id is not None:
        qs = qs.filter(task_id=task_id)
    return _event_frames(reversed(qs.order_by("-stream_seq")[:count]))


def _latest_log_seq(task_id) -> int:
    return TaskLog.objects.filter(task_id=task_id).aggregate(m=Max("seq"))["m"] or 0


def _logs_after(task_id, after: int, limit: int) -> Frames:
    return [wire(logs.frame(r)) for r in TaskLog.objects.filter(task_id=task_id, seq__gt=after).order_by("seq")[:limit]]


def _logs_between(task_id, lo: int, hi: int) -> Frames:
    return [
        wire(logs.frame(r)) for r in TaskLog.objects.filter(task_id=task_id, seq__gt=lo, seq__lt=hi).order_by("seq")
    ]


def _logs_tail(task_id, count: int) -> Frames:
    rows = TaskLog.objects.filter(task_id=task_id).order_by("-seq")[:count]
    return [wire(logs.frame(r)) for r in reversed(rows)]


db = database_sync_to_async


class EventsConsumer(_StreamConsumer):
    """/ws/events: every event envelope, in dispatch order."""

    def parse(self) -> dict:
        return {"after": self.number("after")}

    def group_names(self) -> list[str]:
        return ["events"]

    def streams(self) -> list[_Dense]:
        return [self.events] if hasattr(self, "events") else []

    async def backfill(self, after: int | None) -> None:
        self.events = _Dense(self, lambda lo, hi: db(_events_between)(lo, hi))
        if after is None:
            self.events.last = await self.send_frames(await db(_events_tail)(EVENTS_BACKFILL))
            return
        cursor = min(after, await db(_latest_stream_seq)())
        while True:
            page = await db(_events_after)(cursor, PAGE)
            if page:
                cursor = await self.send_frames(page)
            if len(page) < PAGE:
                break
        self.events.last = cursor

    async def event_frames(self, message):
        await self.events.live(message["frames"])

    async def log_frames(self, message):
        pass  # not on this stream


class LogsConsumer(_StreamConsumer):
    """/ws/logs/<taskId>: the task's log lines and its event envelopes."""

    def parse(self) -> dict:
        return {
            "after": self.number("after"),
            "tail": self.number("tail", MAX_TAIL),
            "events_after": self.number("eventsAfter"),
        }

    async def prepare(self) -> bool:
        self.task_id = self.scope["url_route"]["kwargs"]["task_id"]
        if not await db(Task.objects.filter(pk=self.task_id).exists)():
            await self.close(code=CLOSE_NOT_FOUND, reason="No task with this id.")
            return False
        return True

    def group_names(self) -> list[str]:
        return [f"task-{self.task_id}"]

    def streams(self) -> list[_Dense]:
        return [self.lines] if hasattr(self, "lines") else []

    async def backfill(self, after: int | None, tail: int | None, events_after: int | None) -> None:
        task_id = self.task_id
        # The task's envelopes first: they say what state the lines below belong to.
        if events_after is None:
            self.events_last = await self.send_frames(await db(_events_tail)(EVENTS_BACKFILL, task_id))
        else:
            cursor = min(events_after, await db(_latest_stream_seq)())
            while True:
                page = await db(_events_after)(cursor, PAGE, task_id)
                if page:
                    cursor = await self.send_frames(page)
                if len(page) < PAGE:
                    break
            self.events_last = cursor

        self.lines = _Dense(self, lambda lo, hi: db(_logs_between)(task_id, lo, hi))
        latest = await db(_latest_log_seq)(task_id)
        if after is None:
            count = LOGS_TAIL if tail is None else tail
            frames = await db(_logs_tail)(task_id, count) if count else []
            await self.send_frames(frames)
            # The tail was read after `latest`; never step back below what was just sent.
            self.lines.last = max(latest, frames[-1][0] if frames else 0)
            return
        cursor = min(after, latest)
        while True:
            page = await db(_logs_after)(task_id, cursor, PAGE)
            if page:
                cursor = await self.send_frames(page)
            if len(page) < PAGE:
                break
        self.lines.last = cursor

    async def log_frames(self, message):
        await self.lines.live(message["frames"])

    async def event_frames(self, message):
        top = max(f[0] for f in message["frames"])
        if top <= self.events_last:
            return
        # Sparse: read what this task has between the last sent and this one, inclusive.
        frames = await db(_events_between)(self.events_last, top + 1, self.task_id)
        known = {f[0] for f in frames}
        frames += [f for f in message["frames"] if f[0] > self.events_last and f[0] not in known]
        for frame in sorted(frames, key=lambda f: f[0]):
            if frame[0] > self.events_last:
                await self.send_frame(frame)
                self.events_last = frame[0]
