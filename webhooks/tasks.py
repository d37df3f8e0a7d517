"""Celery tasks of outgoing webhooks: each takes an id (or nothing) and calls a service."""

from __future__ import annotations

from celery import shared_task

from webhooks import batch, delivery, health, sweeper


@shared_task(name="webhooks.deliver", acks_late=True, ignore_result=True)
def deliver(delivery_id: int, manual: bool = False) -> None:
    # acks_late: a worker lost mid-task leaves the message to be redelivered; the claim in
    # delivery.attempt makes that (and any duplicate message) safe.
    delivery.attempt(delivery_id, manual=manual)


@shared_task(name="webhooks.drain", acks_late=True, ignore_result=True)
def drain() -> None:
    # Takes no id: it claims whatever is due, up to a batch, so a duplicate or redelivered
    # message only finds less to do.
    batch.drain()


@shared_task(name="webhooks.enqueue_due", ignore_result=True)
def enqueue_due() -> int:
    return sweeper.enqueue_due()


@shared_task(name="webhooks.maintenance", ignore_result=True)
def maintenance() -> int:
    health.disable_long_failing()
    return sweeper.purge_old()
