"""Dispatch: fan one committed Event out to every registered subscriber, then mark it."""

from __future__ import annotations

import logging

from django.utils import timezone

from optio import events
from optio.models import Event

log = logging.getLogger(__name__)


def dispatch(seq: int) -> None:
    event = Event.objects.select_related("task").filter(seq=seq).first()
    if event is None or event.dispatched_at is not None:
        return
    for name, fn in events.subscribers().items():
        try:
            fn(event)
        except Exception:
            log.exception("subscriber %s failed for event %s", name, event.public_id)
            raise
    Event.objects.filter(seq=seq, dispatched_at__isnull=True).update(dispatched_at=timezone.now())


def to_events_group(event: Event) -> None:
    """The core's own subscriber: live frames for /ws/events and /ws/logs/<taskId>."""
    from optio.realtime import send_to_group

    frame = dict(event.envelope(), seq=event.seq)
    send_to_group("events", {"type": "event.frame", "frame": frame})
    if event.task_id:
        send_to_group(f"task-{event.task_id}", {"type": "event.frame", "frame": frame})
