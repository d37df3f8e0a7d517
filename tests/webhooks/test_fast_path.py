"""The PostgreSQL hot path (webhooks/sql.py) outside test transactions, as workers run it:
single-statement claims and records, racing claimers, lease takeover, idempotent creation."""

from __future__ import annotations

import json
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


def test_a_dispatch_batch_creates_every_events_deliveries_in_one_statement(
    pg, monkeypatch, django_assert_max_num_queries
):
    from django.db import transaction

    from webhooks import conf

    everything = endpoints.create(url="https://203.0.113.5/all", events=["*"], secret="s3cret")
    tasks_only = endpoints.create(url="https://203.0.113.5/tasks", events=["task.*"], secret="s3cret")
    completed = endpoints.create(url="https://203.0.113.5/done", events=["task.completed"], secret="s3cret")
    off = endpoints.create(url="https://203.0.113.5/off", events=["*"], secret="s3cret")
    off.active = False
    off.save()
    drains = []
    monkeypatch.setattr(delivery, "request_drains", drains.append)
    batch = [_event("task.completed"), _event("task.failed"), _event("task.completed")]
    monkeypatch.setattr(conf, "MAX_PAYLOAD_BYTES", 10_000)
    big = Event.objects.create(name="task.failed", data={"taskId": "t2", "title": "x" * 20_000})

    with transaction.atomic(), django_assert_max_num_queries(1):
        delivery.on_events([*batch, big])

    got = set(Delivery.objects.values_list("event_id", "webhook_id", "status"))
    expected = {(e.seq, w.pk, "pending") for e in batch for w in (everything, tasks_only)}
    expected |= {(e.seq, completed.pk, "pending") for e in batch if e.name == "task.completed"}
    expected |= {(big.seq, w.pk, "failed") for w in (everything, tasks_only)}
    assert got == expected
    assert drains == [8]  # the too-large event's deliveries are not sent
    for d in Delivery.objects.filter(status="pending"):
        assert d.public_id == delivery.message_id(Event.objects.get(seq=d.event_id).public_id, d.webhook_id)
        assert json.loads(d.body) == json.loads(delivery.serialize(Event.objects.get(seq=d.event_id)))
    assert "payload is" in Delivery.objects.filter(status="failed").first().last_error

    Delivery.objects.filter(event_id=batch[0].seq).update(attempt_count=1)  # these were tried
    with transaction.atomic():  # a re-dispatch creates nothing twice, and re-queues the untried
        delivery.on_events(batch)
    assert Delivery.objects.count() == len(expected) and drains == [8, 8 - 3]
