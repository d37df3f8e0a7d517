"""Celery tasks of the Slack integration: thin wrappers that take an id and call a service."""

from __future__ import annotations

from celery import shared_task

from integrations.slack import services
from integrations.slack.notifier import enqueue


@shared_task(name="slack.deliver", acks_late=True, ignore_result=True)
def deliver(notification_id: int) -> None:
    wait = services.deliver(notification_id)
    if wait is not None:
        # The wait is Slack's Retry-After or our backoff; the row stays pending meanwhile.
        enqueue(notification_id, countdown=wait)


@shared_task(name="slack.sweep", ignore_result=True)
def sweep() -> None:
    services.sweep()
