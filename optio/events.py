"""The event spine: publish (outbox write + dispatch on commit) and the subscriber registry.

`optio` imports no app. Apps subscribe in their AppConfig.ready():

    events.subscribe("webhooks", deliver_to_webhooks)

The subscriber contract (what optio/dispatch.py guarantees and what it asks in return):

- A subscriber is called with a committed Event, once per event on the happy path, inside
  its own database transaction (its writes and on_commit hooks are all-or-nothing).
- It should be quick and must not send over the network itself: record what to send (a
  webhook Delivery row, a Slack notification row) and enqueue the Celery task that sends it.
- If it raises, the event stays undispatched and is retried by the sweeper with back-off;
  subscribers that already succeeded for that event are not called again.
- A worker can die after a subscriber succeeded but before that was recorded; the event
  is then dispatched again once its claim lease expires. So a subscriber must be idempotent:
  key what it records on the event (unique (event, webhook), unique (event, repo)) so a
  second call for the same event creates and sends nothing new.
"""

from __future__ import annotations

import logging
import threading
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

# Enqueueing happens after commit, inside the request that made the change: with the broker
# down, fail fast and leave the event to the sweeper rather than hang the response.
ENQUEUE_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def subscribe(name: str, fn: Subscriber) -> None:
    """Register `fn` under a unique name (re-registering the same name replaces it).

    The name is stored with each event's dispatch state, so keep it stable across releases.
    """
    _subscribers[name] = fn


def unsubscribe(name: str) -> None:
    _subscribers.pop(name, None)


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


def frame(event: Event) -> dict:
    """A WebSocket frame: the envelope plus `seq`, the event's place in dispatch order."""
    return dict(event.envelope(), seq=event.stream_seq)


def publish(name: str, task: Task | None, *, from_state: str | None = None, data: dict | None = None) -> Event:
    """Write the outbox row in the caller's transaction; dispatch it once that commits.

    A rolled-back transaction takes the row with it and never dispatches anything.
    """
    from optio.models import Event

    payload = task_data(task, from_state) if task is not None else {}
    if data:
        payload.update(data)
    event = Event.objects.create(name=name, task=task, data=payload)
    _pending.seqs.append(event.seq)
    transaction.on_commit(_enqueue_pending)
    return event


# One dispatch per commit, not one per event: dispatch(seq) fans out every waiting event up
# to seq, so the first on-commit callback of a transaction enqueues the highest seq it wrote
# and the others find nothing left to do. Seqs of a rolled-back savepoint may linger here;
# dispatching "up to" a seq that never committed is harmless.
class _Pending(threading.local):
    def __init__(self) -> None:
        self.seqs: list[int] = []


_pending = _Pending()


def _enqueue_pending() -> None:
    seqs = _pending.seqs
    if not seqs:
        return
    _pending.seqs = []
    _enqueue_dispatch(max(seqs))


def _enqueue_dispatch(seq: int) -> None:
    from optio.tasks import dispatch_event

    try:
        dispatch_event.apply_async((seq,), retry=True, retry_policy=ENQUEUE_RETRY_POLICY)
    except Exception:  # broker down: the sweeper re-dispatches undispatched events
        log.warning("could not enqueue dispatch of event %s; the sweeper will retry", seq, exc_info=True)
