"""Celery tasks of ticket sync. Beat runs `sync_due` every OPTIO_TICKET_SYNC_INTERVAL seconds."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from tickets import sync


@shared_task(name="tickets.sync_due", ignore_result=True)
def sync_due() -> int:
    """Enqueue one sync task per enabled provider that is due; returns how many."""
    ids = sync.due_provider_ids()
    for provider_id in ids:
        enqueue(provider_id)
    return len(ids)


@shared_task(name="tickets.sync_provider", ignore_result=True, acks_late=True)
def sync_provider(provider_id: int) -> str:
    # No retry policy here: a failure is recorded on the provider and the next beat tick retries.
    return sync.sync_provider(provider_id).status


def enqueue(provider_id: int) -> None:
    # A sync that waited longer than one interval in the queue is stale: the next tick enqueues a fresh one.
    sync_provider.apply_async((provider_id,), expires=settings.OPTIO_TICKET_SYNC_INTERVAL)
