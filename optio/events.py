"""The event spine: publish (outbox write + dispatch on commit) and the subscriber registry.

`optio` imports no app. Apps subscribe in their AppConfig.ready():

    events.subscribe("webhooks", deliver_to_webhooks)

The subscriber contract (what optio/dispatch.py guarantees and what it asks in return):

- A subscriber is called with a committed Event, once per event on the happy path, inside
  a savepoint of its own (its writes and on_commit hooks are all-or-nothing). The dispatcher
  calls it for a whole batch of events in one savepoint (or its `batch` form once); if that
  fails, the batch is rolled back and the events are retried one savepoint each, so only the
  event that fails waits. Side effects outside the database may therefore repeat.
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

import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
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
BatchSubscriber = Callable[[list["Event"]], None]
_subscribers: dict[str, Subscriber] = {}
_batch: dict[str, BatchSubscriber] = {}

# Enqueueing happens after commit, inside the request that made the change: with the broker
# down, fail fast and leave the event to the sweeper rather than hang the response.
ENQUEUE_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def subscribe(name: str, fn: Subscriber, *, batch: BatchSubscriber | None = None) -> None:
    """Register `fn` under a unique name (re-registering the same name replaces it).

    The name is stored with each event's dispatch state, so keep it stable across releases.
    `batch`, if given, does what `fn` does for a list of events in one go (one query, one
    message); the dispatcher falls back to `fn` event by event when a batch fails.
    """
    _subscribers[name] = fn
    _batch.pop(name, None)
    if batch is not None:
        _batch[name] = batch


def unsubscribe(name: str) -> None:
    _subscribers.pop(name, None)
    _batch.pop(name, None)


def subscribers() -> dict[str, Subscriber]:
    return dict(_subscribers)


def batch_subscribers() -> dict[str, BatchSubscriber]:
    return dict(_batch)


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


def json_text(value) -> str:
    """Compact JSON, as webhook bodies and WebSocket frames carry envelopes (DESIGN.md).

    orjson writes the same text as json.dumps(separators=(",", ":"), ensure_ascii=False) at a
    fifth of the CPU (two per event in a dispatch). Floats may be spelt differently (1e16 for
    1e+16) and NaN becomes null, both still the same JSON value (NaN was not valid JSON at all).
    What orjson refuses (integers beyond 64 bits) takes json's road."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


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


# At most one dispatch per commit, not one per event: a dispatch fans out every waiting event,
# so the first on-commit callback of a transaction enqueues the highest seq it wrote. Seqs of a rolled-back savepoint may linger here;
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


# A dispatch job takes every event waiting when it runs, so one queued job serves any number of
# commits that land before it starts: a commit enqueues a job only when none is queued. The
# flag lives in the cache (Redis in production, shared by every process; in-process in embedded
# mode); a job clears it as it starts (dispatch_started), before it claims anything, so an event
# committed after that queues a job of its own. The flag expires by itself: a job lost between
# enqueue and start holds events back for at most DISPATCH_FLAG_TTL (and the sweeper runs too).
# Measured on bench_webhooks: a burst of 5,000 commits sent 5,000 dispatch messages, and
# receiving them was a third of the workers' CPU.
DISPATCH_FLAG = "optio:dispatch-queued"
DISPATCH_FLAG_TTL = 1


def request_dispatch(seq: int) -> None:
    """Make sure a dispatch job is queued for the waiting events (`seq` among them)."""
    _enqueue_dispatch(seq)


def _enqueue_dispatch(seq: int) -> None:
    from django.core.cache import cache

    from optio.tasks import dispatch_event

    try:
        if not cache.add(DISPATCH_FLAG, seq, DISPATCH_FLAG_TTL):
            return  # a queued dispatch job will take this event
    except Exception:  # no cache: enqueue one job per commit, as if none were queued
        log.warning("could not read the dispatch flag; enqueueing a dispatch anyway", exc_info=True)
    try:
        dispatch_event.apply_async((seq,), retry=True, retry_policy=ENQUEUE_RETRY_POLICY)
    except Exception:  # broker down: the sweeper re-dispatches undispatched events
        _clear_flag()
        log.warning("could not enqueue dispatch of event %s; the sweeper will retry", seq, exc_info=True)


def dispatch_started() -> None:
    """A dispatch job is about to claim: commits from now on must queue a job of their own."""
    _clear_flag()


def _clear_flag() -> None:
    from django.core.cache import cache

    try:
        cache.delete(DISPATCH_FLAG)
    except Exception:  # the flag expires by itself
        log.warning("could not clear the dispatch flag", exc_info=True)
