"""Drains (webhooks/batch.py): one job claims a batch of due deliveries, sends them at once and
records them together. On PostgreSQL outside test transactions, as workers run it, and on the
row-by-row path that SQLite and callers inside a transaction take."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from optio.models import Event
from tests import services
from tests.fakes.receiver import Receiver
from webhooks import batch, delivery, endpoints, sql
from webhooks.models import Attempt, Delivery, Webhook


@pytest.fixture
def pg(transactional_db, fast_settings):
    services.require_postgres()
    assert sql.usable()
    return fast_settings


def _deliveries(hook: Webhook, count: int) -> list[int]:
    ids = []
    for i in range(count):
        event = Event.objects.create(name="task.completed", data={"taskId": f"t{i}", "title": "Add email validation"})
        ids += delivery.create_for_event(event, [hook], enqueue=False)
    return ids


@pytest.mark.postgres
def test_a_drain_claims_a_batch_sends_it_and_records_it(pg):
    pg.OPTIO_WEBHOOK_BATCH_SIZE = 32
    with Receiver() as rx:
        hook = endpoints.create(url=rx.url, events=["*"], secret="s3cret")
        ids = _deliveries(hook, 40)
        assert [batch.drain(), batch.drain(), batch.drain()] == [32, 8, 0]
        assert len(rx.requests) == 40
        assert {r.headers["webhook-id"] for r in rx.requests} == set(
            Delivery.objects.filter(pk__in=ids).values_list("public_id", flat=True)
        )
        rows = Delivery.objects.filter(pk__in=ids)
        assert set(rows.values_list("status", "success", "status_code", "attempt_count", "claimed_until")) == {
            ("success", True, 200, 1, None)
        }
        assert rows.filter(finished_at__isnull=True).count() == 0
        attempts = Attempt.objects.filter(delivery_id__in=ids)
        assert attempts.count() == 40
        assert set(attempts.values_list("number", "trigger", "response_status", "success")) == {
            (1, "scheduled", 200, True)
        }
        assert all(a.request_headers["X-Optio-Signature"] == "[redacted]" for a in attempts)


@pytest.mark.postgres
def test_racing_drains_send_each_delivery_once(pg):
    pg.OPTIO_WEBHOOK_BATCH_SIZE = 16
    with Receiver() as rx:
        hook = endpoints.create(url=rx.url, events=["*"], secret="s3cret")
        _deliveries(hook, 200)
        start = threading.Barrier(6)

        def worker():
            start.wait()
            try:
                while batch.drain():
                    pass
            finally:
                connection.close()

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(rx.requests) == 200
        assert len({r.headers["webhook-id"] for r in rx.requests}) == 200
        assert Attempt.objects.count() == 200
        assert set(Delivery.objects.values_list("status", "attempt_count")) == {("success", 1)}


@pytest.mark.postgres
def test_a_drain_records_each_outcome_and_retries_with_the_same_bytes(pg):
    with Receiver() as rx:
        ok = endpoints.create(url=rx.url_for("200"), events=["*"], secret="s3cret")
        busy = endpoints.create(url=rx.url_for("429:120"), events=["*"], secret="s3cret")
        gone = endpoints.create(url=rx.url_for("410"), events=["*"], secret="s3cret")
        event = Event.objects.create(name="task.completed", data={"taskId": "t1", "title": "Add email validation"})
        delivery.create_for_event(event, enqueue=False)
        before = timezone.now()
        assert batch.drain() == 3

        done = {d.webhook_id: d for d in Delivery.objects.all()}
        assert (done[ok.pk].status, done[ok.pk].status_code) == ("success", 200)
        retry = done[busy.pk]
        assert (retry.status, retry.status_code, retry.scheduled_attempts) == ("pending", 429, 1)
        assert retry.next_attempt_at - before >= timedelta(seconds=119)  # the receiver's Retry-After
        assert retry.claimed_until is None and retry.finished_at is None
        assert (done[gone.pk].status, done[gone.pk].status_code) == ("failed", 410)
        gone.refresh_from_db()
        assert not gone.active and "410 Gone" in gone.disabled_reason
        busy.refresh_from_db()
        assert busy.failing_since is not None and busy.active

        Webhook.objects.filter(pk=busy.pk).update(url=rx.url_for("200"))
        Delivery.objects.filter(pk=retry.pk).update(next_attempt_at=timezone.now())
        assert batch.drain() == 1
        retry.refresh_from_db()
        assert (retry.status, retry.attempt_count) == ("success", 2)
        to_busy = [r for r in rx.requests if r.path.startswith("/mode/429") or r.path == "/mode/200"]
        sent_twice = [r for r in to_busy if r.headers["webhook-id"] == retry.public_id]
        assert len(sent_twice) == 2 and sent_twice[0].body == sent_twice[1].body == retry.body_bytes
        assert list(Attempt.objects.filter(delivery=retry).values_list("number", "response_status")) == [
            (1, 429),
            (2, 200),
        ]


@pytest.mark.postgres
def test_a_drain_reads_only_its_batch_from_a_large_backlog(pg, monkeypatch):
    """The claim walks delivery_due in order and stops after the batch, whatever the planner's
    estimates: with statistics that said few rows were due (a fresh database, autovacuum off),
    each batch of a burst read every due row and sorted them. A high random_page_cost tips the
    planner the same way here."""
    hook = endpoints.create(url="http://127.0.0.1:9/hook", events=["*"], secret="s3cret")
    now = timezone.now()
    events = Event.objects.bulk_create([Event(name="task.completed") for _ in range(2000)])
    Delivery.objects.bulk_create(
        Delivery(webhook=hook, event=e, public_id=f"msg_{e.pk}", event_name=e.name, body="{}", next_attempt_at=now)
        for e in events
    )
    plans = []

    def explain(statement, params, settings=""):
        with connection.cursor() as cursor:
            cursor.execute("BEGIN; SET LOCAL random_page_cost = 100; " + settings)
            cursor.execute("EXPLAIN (ANALYZE) " + statement, params)
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
            cursor.execute("ROLLBACK")
        return []

    monkeypatch.setattr(sql, "_run", explain)
    batch.claim(100)
    (plan,) = plans
    assert "Index Scan using delivery_due" in plan and "Sort" not in plan, plan
    read = [int(n) for n in re.findall(r"actual time=\S+ rows=(\d+)", plan)]
    assert read and max(read) == 100, plan  # not the 2,000 due


@pytest.mark.postgres
def test_a_short_claim_looks_again_for_rows_committed_while_it_ran(pg, monkeypatch):
    """Racing drains: a claim sees what was committed when it began, and a drain that began
    later can take rows this one saw. Drains are queued one per batch of new rows, so a short
    claim that stopped there stranded the newest rows until the sweeper came (seen in
    bench_webhooks: 20-80 of a 5,000 burst, now and then). Here the rows a later view would
    show are committed just after the first claim."""
    with Receiver() as rx:
        hook = endpoints.create(url=rx.url, events=["*"], secret="s3cret")
        first = _deliveries(hook, 80)
        claim_due, calls = sql.claim_due, []

        def racing(limit, *args):
            rows = claim_due(limit, *args)
            calls.append((limit, len(rows)))
            if len(calls) == 1:
                later.extend(_deliveries(hook, 20))  # committed after that claim began
            return rows

        later: list[int] = []
        monkeypatch.setattr(sql, "claim_due", racing)
        assert batch.drain(100) == 100
        assert calls == [(100, 80), (20, 20)]
        assert len(rx.requests) == 100
        assert Delivery.objects.filter(pk__in=first + later, status="success").count() == 100
        # Nothing was due any more: the next short claim ends the search at once.
        calls.clear()
        assert batch.drain(100) == 0 and calls == [(100, 0)]


@pytest.mark.postgres
def test_a_drain_settles_due_deliveries_of_a_disabled_endpoint_without_sending(pg):
    with Receiver() as rx:
        hook = endpoints.create(url=rx.url, events=["*"], secret="s3cret")
        (pk,) = _deliveries(hook, 1)
        endpoints.update(hook, active=False)
        assert batch.drain() == 0
        d = Delivery.objects.get(pk=pk)
        assert (d.status, d.attempt_count) == ("failed", 0)
        assert d.last_error.startswith("Not sent: Disabled by hand") and d.next_attempt_at is None
        assert rx.requests == [] and batch.drain() == 0


@pytest.mark.postgres
def test_a_hanging_endpoint_does_not_hold_back_the_rest_of_its_batch(pg):
    pg.OPTIO_WEBHOOK_TIMEOUT = 30  # the hang ends when the test releases it, not by timing out
    pg.OPTIO_WEBHOOK_STRAGGLER_WAIT = 0.05
    hanging = Receiver(default="hang").start()
    try:
        with Receiver() as rx:
            stuck = endpoints.create(url=hanging.url, events=["*"], secret="s3cret")
            fine = endpoints.create(url=rx.url, events=["*"], secret="s3cret")
            event = Event.objects.create(name="task.completed", data={"taskId": "t1", "title": "Add email validation"})
            delivery.create_for_event(event, enqueue=False)
            runner = threading.Thread(target=lambda: (batch.drain(), connection.close()))
            runner.start()
            rx.wait_for(1)
            hanging.wait_for(1)
            sent = Delivery.objects.filter(webhook=fine)
            deadline = timezone.now() + timedelta(seconds=20)
            while sent.get().status != "success" and timezone.now() < deadline:
                threading.Event().wait(0.05)
            # Recorded while the other request of the same batch is still waiting for an answer.
            assert sent.get().status == "success"
            assert Delivery.objects.get(webhook=stuck).status == "sending"
    finally:
        hanging.stop()  # releases the hung request: the connection closes
    runner.join(30)
    d = Delivery.objects.get(webhook=stuck)
    assert (d.status, d.attempt_count) == ("pending", 1) and d.last_error


def test_the_row_by_row_path_sends_and_records_a_batch(hook, rx, make_delivery, settings):
    settings.OPTIO_WEBHOOK_BATCH_SIZE = 2
    made = [make_delivery(hook) for _ in range(3)]
    rx.plan("500")
    assert [batch.drain(), batch.drain(), batch.drain()] == [2, 1, 0]
    statuses = sorted(Delivery.objects.filter(pk__in=[d.pk for d in made]).values_list("status", flat=True))
    assert statuses == ["pending", "success", "success"]
    assert Attempt.objects.count() == 3 and len(rx.requests) == 3


def test_the_row_by_row_path_carries_on_past_rows_another_drain_took(hook, rx, make_delivery, monkeypatch):
    # Two drains read the same oldest due rows; the other one wins the first three. This one
    # must still fill its batch from the rows after them: jobs are queued per batch of new
    # deliveries, so what it left would wait for the sweeper (a minute) instead.
    made = [make_delivery(hook) for _ in range(6)]
    real_claim = delivery._claim
    lost = {d.pk for d in made[:3]}

    def racing(pk, manual):
        if pk in lost:
            real_claim(pk, manual)  # the other drain's claim
            return None
        return real_claim(pk, manual)

    monkeypatch.setattr(delivery, "_claim", racing)
    claimed = batch.claim(3)
    assert sorted(item.pk for item, _ in claimed) == [d.pk for d in made[3:]]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sending"}


def test_new_deliveries_of_one_transaction_share_their_drain_jobs(hook, rx, emit, monkeypatch, settings):
    settings.OPTIO_WEBHOOK_BATCH_SIZE = 3
    jobs: list[int] = []
    monkeypatch.setattr(delivery, "enqueue_drains", lambda n, **kw: jobs.append(n))
    emit(to=("running", "completed"))  # four events, one commit
    assert Delivery.objects.count() == 4 and jobs == [2]
