"""The PostgreSQL hot path (webhooks/sql.py) outside test transactions, as workers run it:
single-statement claims and records, racing claimers, lease takeover, idempotent creation."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from optio.models import Event
from tests import services
from tests.fakes.receiver import Receiver
from webhooks import delivery, endpoints, sql
from webhooks.models import Attempt, Delivery

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(transactional_db, fast_settings):
    services.require_postgres()
    assert sql.usable()


@pytest.fixture
def slow_rx():
    with Receiver(default="slow:0.3") as rx:
        yield rx


def _event(name: str = "task.completed") -> Event:
    return Event.objects.create(name=name, data={"taskId": "t1", "title": "Add email validation"})


def test_racing_claimers_send_once(pg, slow_rx):
    hook = endpoints.create(url=slow_rx.url, events=["*"], secret="s3cret")
    (pk,) = delivery.create_for_event(_event(), [hook], enqueue=False)
    start = threading.Barrier(8)
    results = []

    def worker():
        start.wait()
        try:
            results.append(delivery.attempt(pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results, key=str) == [None] * 7 + ["success"]
    assert len(slow_rx.requests) == 1
    assert Attempt.objects.filter(delivery_id=pk).count() == 1


def test_fast_path_records_retries_and_success(pg):
    with Receiver() as rx:
        rx.plan("503")
        hook = endpoints.create(url=rx.url, events=["*"], secret="s3cret")
        (pk,) = delivery.create_for_event(_event(), [hook], enqueue=False)
        assert delivery.attempt(pk) == "pending"
        d = Delivery.objects.get(pk=pk)
        assert (d.attempt_count, d.scheduled_attempts, d.status_code) == (1, 1, 503)
        assert d.next_attempt_at > timezone.now() and d.claimed_until is None
        Delivery.objects.filter(pk=pk).update(next_attempt_at=timezone.now())
        assert delivery.attempt(pk) == "success"
        assert list(Attempt.objects.filter(delivery_id=pk).values_list("number", "response_status")) == [
            (1, 503),
            (2, 200),
        ]
        assert rx.requests[0].body == rx.requests[1].body


def test_fast_path_takes_over_an_expired_lease(pg):
    with Receiver() as rx:
        hook = endpoints.create(url=rx.url, events=["*"], secret="s3cret")
        (pk,) = delivery.create_for_event(_event(), [hook], enqueue=False)
        Delivery.objects.filter(pk=pk).update(
            status="sending", attempt_count=1, claimed_until=timezone.now() - timedelta(seconds=1)
        )
        assert delivery.attempt(pk) == "success"
        assert list(Attempt.objects.filter(delivery_id=pk).values_list("number", "error_class")) == [
            (1, "worker_lost"),
            (2, ""),
        ]


def test_fast_path_settles_a_due_delivery_of_a_disabled_endpoint_without_sending(pg):
    with Receiver() as rx:
        hook = endpoints.create(url=rx.url, events=["*"], secret="s3cret")
        (pk,) = delivery.create_for_event(_event(), [hook], enqueue=False)
        endpoints.update(hook, active=False)
        assert delivery.attempt(pk) is None
        d = Delivery.objects.get(pk=pk)
        assert d.status == "failed" and d.last_error.startswith("Not sent: Disabled by hand")
        assert rx.requests == []


def test_creation_is_idempotent_and_the_webhook_id_is_derived(pg):
    with Receiver() as rx:
        hook = endpoints.create(url=rx.url, events=["*"], secret="s3cret")
        event = _event()
        first = delivery.create_for_event(event, enqueue=False)
        again = delivery.create_for_event(event, enqueue=False)
        assert first == again and Delivery.objects.count() == 1  # re-dispatch: nothing new, the unsent again
        d = Delivery.objects.get()
        Delivery.objects.all().delete()
        delivery.create_for_event(event, enqueue=False)  # as if re-created after a crash lost it
        assert Delivery.objects.get().public_id == d.public_id
        assert hook.pk == d.webhook_id


def test_the_sql_subscription_match_agrees_with_python(pg):
    patterns = [["*"], ["task.*"], ["task.completed"], ["task.failed", "task.queued"], ["task.pr_opened"]]
    hooks = [endpoints.create(url=f"http://127.0.0.1:9/{i}", events=p, secret="s3cret") for i, p in enumerate(patterns)]
    off = endpoints.create(url="http://127.0.0.1:9/off", events=["*"], secret="s3cret", active=False)
    for name in ("task.completed", "task.failed", "task.created", "task.pr_opened", "tasks.completed"):
        event = _event(name)
        expected = {h.pk for h in delivery.targets(event)}
        delivery.create_for_event(event, enqueue=False)  # the one-statement PostgreSQL path
        got = set(Delivery.objects.filter(event=event).values_list("webhook_id", flat=True))
        assert got == expected, name
        assert off.pk not in got
    assert {h.pk for h in hooks} == set(Delivery.objects.values_list("webhook_id", flat=True))
