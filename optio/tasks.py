"""Celery tasks of the core: event dispatch."""

from __future__ import annotations

from celery import shared_task

from optio import dispatch


@shared_task(name="optio.dispatch_event", acks_late=True)
def dispatch_event(seq: int) -> None:
    dispatch.dispatch(seq)
