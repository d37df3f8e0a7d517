"""Nothing committed is lost: an event committed while the broker is unreachable is
delivered by the beat sweeper once the broker is back (real Redis, real worker and beat)."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.db.models import F

from optio import events, lifecycle
from optio.celery import app as celery_app
from optio.embedded import EmbeddedCelery
from optio.models import Event, Repo
from tests.optio.spine_support import TcpProxy, celery_broker, wait_for
from tests.services import redis_url

pytestmark = pytest.mark.django_db(transaction=True)


@contextlib.contextmanager
def only_the_sweeper_scheduled(every: float):
    """Beat runs just the sweeper, more often than in production, to keep the test short."""
    saved = celery_app.conf.beat_schedule
    entry = dict(saved["optio.sweep-events"], schedule=every, options={"expires": every * 2})
    celery_app.conf.beat_schedule = {"optio.sweep-events": entry}
    try:
        yield
    finally:
        celery_app.conf.beat_schedule = saved


def test_event_committed_while_the_broker_is_down_is_delivered_by_the_sweeper_once_it_is_back():
    url = urlsplit(redis_url())
    proxy = TcpProxy(url.hostname or "127.0.0.1", url.port or 6379).start()
    repo = Repo.objects.create(url="https://github.com/acme/webapp")
    delivered = []

    def receiver(event):
        from celery import current_task

        delivered.append((event.public_id, current_task.name))

    events.subscribe("test.receiver", receiver)
    worker = None
    try:
        with celery_broker(f"redis://127.0.0.1:{proxy.port}{url.path or '/0'}"), only_the_sweeper_scheduled(1.0):
            proxy.stop()  # the broker goes away
            task = lifecycle.create_task(repo, "Add email validation", "Do it", queue=False)
            event = Event.objects.get(task=task)
            assert event.dispatched_at is None  # committed, but its dispatch could not be enqueued
            assert delivered == []

            # Some seconds pass (the sweeper leaves events younger than SWEEP_AFTER to their
            # own dispatch), then the broker comes back with a worker and beat behind it.
            Event.objects.filter(pk=event.pk).update(created_at=F("created_at") - timedelta(seconds=10))
            proxy.start()
            worker = EmbeddedCelery(concurrency=2, beat=True).start()
            wait_for(lambda: Event.objects.get(pk=event.pk).dispatched_at, timeout=30, what="the sweeper")
    finally:
        if worker is not None:
            worker.stop()
        proxy.stop()
        events.unsubscribe("test.receiver")

    assert delivered == [(event.public_id, "optio.sweep_events")]
