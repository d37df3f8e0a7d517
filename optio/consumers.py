"""WebSocket consumers: /ws/events and /ws/logs/<taskId> (DESIGN.md, WebSockets)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from optio.auth import user_for_token

CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404


class _Authenticated(AsyncWebsocketConsumer):
    groups_to_join: list[str] = []

    def query(self, name: str) -> str | None:
        values = parse_qs(self.scope.get("query_string", b"").decode()).get(name)
        return values[0] if values else None

    async def websocket_connect(self, message):
        user = await database_sync_to_async(user_for_token)(self.query("token"))
        if user is None:
            session_user = self.scope.get("user")
            if session_user is not None and session_user.is_authenticated:
                user = session_user
        if user is None:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.user = user
        await super().websocket_connect(message)

    async def send_frame(self, frame: dict) -> None:
        await self.send(text_data=json.dumps(frame, separators=(",", ":")))


class EventsConsumer(_Authenticated):
    groups = ["events"]

    async def event_frame(self, message):
        await self.send_frame(message["frame"])


class LogsConsumer(_Authenticated):
    async def websocket_connect(self, message):
        from optio.models import Task

        task_id = self.scope["url_route"]["kwargs"]["task_id"]
        exists = await database_sync_to_async(Task.objects.filter(pk=task_id).exists)()
        if not exists:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.groups = [f"task-{task_id}"]
        await super().websocket_connect(message)

    async def event_frame(self, message):
        await self.send_frame(message["frame"])

    async def log_frames(self, message):
        for frame in message["frames"]:
            await self.send_frame(frame)
