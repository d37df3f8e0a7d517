"""Celery tasks of the core: event dispatch and the sweeper that makes it durable."""

from __future__ import annotations

from celery import shared_task

from optio import dispatch

SWEEP_INTERVAL = 5.0  # seconds between sweeps; dispatch.SWEEP_AFTER is how old an event must be


@shared_task(name="optio.dispatch_event", acks_late=True)
def dispatch_event(seq: int) -> None:
    dispatch.dispatch(seq)


@shared_task(name="optio.sweep_events", acks_late=True)
def sweep_events() -> None:
    dispatch.sweep()
