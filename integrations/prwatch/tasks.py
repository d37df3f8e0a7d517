"""Celery tasks of the PR watcher: each takes an id and calls a service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from integrations.prwatch import deliveries, watcher, writeback


@shared_task(name="prwatch.poll", ignore_result=True)
def poll() -> int:
    """Beat, every OPTIO_PR_WATCH_INTERVAL seconds: one check per task waiting on its PR."""
    ids = watcher.due_task_ids()
    for task_id in ids:
        # A check that waited longer than an interval is stale: the next tick enqueues a fresh one.
        check_pull.apply_async((task_id,), expires=settings.OPTIO_PR_WATCH_INTERVAL)
    return len(ids)


@shared_task(name="prwatch.check_pull", ignore_result=True)
def check_pull(task_id: str) -> str:
    # No retry policy: a failure is recorded on the watch and the next poll looks again.
    return watcher.check_task(task_id).outcome


@shared_task(name="prwatch.handle_delivery", ignore_result=True)
def handle_delivery(delivery_id: int) -> str:
    return deliveries.process(delivery_id)


@shared_task(name="prwatch.send_writeback", ignore_result=True)
def send_writeback(writeback_id: int) -> str:
    result = writeback.send(writeback_id)
    if result.retry_in is not None:
        # The attempt count lives on the row (not in Celery's retry state), so it survives a lost worker.
        send_writeback.apply_async((writeback_id,), countdown=result.retry_in)
    return result.status


@shared_task(name="prwatch.prune_deliveries", ignore_result=True)
def prune_deliveries() -> int:
    return deliveries.prune()
