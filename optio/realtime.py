"""Sending to channel groups from synchronous code (views, Celery tasks)."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


def send_to_group(group: str, message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # live frames are best effort; clients resume from the database
        log.warning("could not send to channel group %s", group, exc_info=True)
