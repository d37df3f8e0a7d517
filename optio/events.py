"""The event spine: publish (outbox write + dispatch on commit) and the subscriber registry.

`optio` imports no app. Apps subscribe in their AppConfig.ready():

    events.subscribe("webhooks", deliver_to_webhooks)

Every subscriber is called with the Event row when it is dispatched; subscribers must be
idempotent per event (DESIGN.md: unique keys such as (event, webhook)).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.db import transaction

if TYPE_CHECKING:
    from optio.models import Event, Task

log = logging.getLogger(__name__)

TASK_EVENTS = (
    "task.created",
    "task.queued",
    "task.running",
    "task.pr_opened",
    "task.completed",
    "task.failed",
    "task.cancelled",
    "task.needs_attention",
)

Subscriber = Callable[["Event"], None]
_subscribers: dict[str, Subscriber] = {}


def subscribe(name: str, fn: Subscriber) -> None:
    """Register `fn` under a unique name (re-registering the same name replaces it)."""
    _subscribers[name] = fn


def subscribers() -> dict[str, Subscriber]:
    return dict(_subscribers)


def task_data(task: Task, from_state: str | None = None) -> dict:
    """The `data` object of a task event envelope (DESIGN.md, "Events")."""
    data = {
        "taskId": str(task.pk),
        "title": task.title,
        "repoUrl": task.repo.url,
        "state": task.state,
        "fromState": from_state,
        "prUrl": task.pr_url or None,
        "costUsd": None if task.cost_usd is None else _money(task.cost_usd),
        "ticketSource": task.ticket_source or None,
        "ticketExternalId": task.ticket_external_id or None,
    }
    if task.ticket_url:
        data["ticketUrl"] = task.ticket_url
    if task.error:
        data["error"] = task.error
    if task.attention_reason:
        data["reason"] = task.attention_reason
    return data


def _money(value) -> str:
    """Decimal as a string with at least two places: 0.35, 1.00, 0.1234."""
    whole, _, frac = format(value.normalize(), "f").partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def publish(name: str, task: Task | None, *, from_state: str | None = None, data: dict | None = None) -> Event:
    """Write the outbox row in the caller's transaction; dispatch it once that commits.

    A rolled-back transaction takes the row with it and never dispatches anything.
    """
    from optio.models import Event

    payload = task_data(task, from_state) if task is not None else {}
    if data:
        payload.update(data)
    event = Event.objects.create(name=name, task=task, data=payload)
    transaction.on_commit(lambda: _enqueue_dispatch(event.seq))
    return event


def _enqueue_dispatch(seq: int) -> None:
    from optio.tasks import dispatch_event

    try:
        dispatch_event.delay(seq)
    except Exception:  # broker down: the sweeper re-dispatches undispatched events
        log.warning("could not enqueue dispatch of event %s; the sweeper will retry", seq, exc_info=True)
