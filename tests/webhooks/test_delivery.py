"""Delivery against a fault-injecting receiver: status classes, retries, schedule, leases, health, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone
from standardwebhooks import Webhook as StandardVerifier

from tests.fakes.receiver import Receiver, refused_url
from tests.webhooks.conftest import SECRET
from webhooks import delivery, health, sweeper
from webhooks.models import Attempt, Delivery, Webhook


def send(d: Delivery, **kwargs) -> str | None:
    return delivery.attempt(d.pk, **kwargs)


def make_due(d: Delivery) -> None:
    Delivery.objects.filter(pk=d.pk).update(next_attempt_at=timezone.now())


def test_retries_send_identical_bytes_with_a_stable_webhook_id(hook, rx, make_delivery):
    rx.plan("500", "503")
    d = make_delivery(hook)
    assert send(d) == "pending"
    make_due(d)
    assert send(d) == "pending"
    make_due(d)
    assert send(d) == "success"
    first, second, third = rx.requests
    assert first.body == second.body == third.body == d.body_bytes
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == third.headers["webhook-id"] == d.public_id
    for r in (first, second, third):
        StandardVerifier(SECRET).verify(r.body, r.headers)
    attempts = list(Attempt.objects.filter(delivery=d).values_list("number", "response_status", "trigger", "success"))
    assert attempts == [(1, 500, "scheduled", False), (2, 503, "scheduled", False), (3, 200, "scheduled", True)]
    d.refresh_from_db()
    assert (d.status, d.success, d.status_code, d.attempt_count, d.last_error) == ("success", True, 200, 3, "")


def test_any_2xx_is_success(make_webhook, rx, make_delivery):
    for code in ("200", "201", "202", "204", "299"):
        d = make_delivery(make_webhook(rx.url_for(code)))
        assert send(d) == "success", code


def test_5xx_schedules_a_retry_in_about_5_seconds(hook, rx, make_delivery):
    rx.plan("503")
    d = make_delivery(hook)
    before = timezone.now()
    assert send(d) == "pending"
    d.refresh_from_db()
    assert before + timedelta(seconds=4) <= d.next_attempt_at <= timezone.now() + timedelta(seconds=6)
    a = d.attempts.get()
    assert (a.error_class, a.response_status, a.response_body) == ("http_status", 503, "status 503")
    assert d.last_error == "The endpoint answered 503."


def test_a_redirect_to_a_private_address_is_a_failure_and_never_followed(hook, rx, make_delivery):
    with Receiver() as metadata:  # where the redirect points; it must never be asked
        rx.plan(f"302:{metadata.url}")
        d = make_delivery(hook)
        assert send(d) == "pending"
        assert metadata.requests == []
    a = Attempt.objects.get(delivery=d)
    assert (a.error_class, a.response_status, a.success) == ("redirect", 302, False)
    assert metadata.url in a.error and "not followed" in a.error


def test_410_disables_the_endpoint_and_stops_its_deliveries(hook, rx, make_delivery):
    rx.plan("410")
    d, later = make_delivery(hook), make_delivery(hook)
    assert send(d) == "failed"
    hook.refresh_from_db()
    assert not hook.active and "410 Gone" in hook.disabled_reason
    assert send(later) is None  # disabled: settled without a request
    later.refresh_from_db()
    assert later.status == "failed" and later.last_error.startswith("Not sent:")
    assert len(rx.requests) == 1


def test_429_retry_after_is_honoured_within_bounds(hook, rx, make_delivery, settings):
    with time_machine.travel(datetime(2025, 1, 15, 10, 30, tzinfo=UTC), tick=False):
        rx.plan("429:120", "429:999999", "429:0")
        d = make_delivery(hook)
        send(d)
        d.refresh_from_db()
        assert d.next_attempt_at == timezone.now() + timedelta(seconds=120)
        make_due(d)
        send(d)
        d.refresh_from_db()
        assert d.next_attempt_at == timezone.now() + timedelta(seconds=36000)  # capped at 10 h
        make_due(d)
        send(d)
        d.refresh_from_db()
        assert d.next_attempt_at == timezone.now() + timedelta(seconds=5)  # not sooner than 5 s


def test_retry_after_as_an_http_date(hook, rx, make_delivery):
    when = timezone.now() + timedelta(minutes=10)
    rx.plan("429:" + when.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    d = make_delivery(hook)
    send(d)
    d.refresh_from_db()
    assert abs((d.next_attempt_at - when).total_seconds()) < 2


def test_a_hanging_endpoint_times_out(hook, rx, make_delivery):
    d = make_delivery(hook)
    Webhook.objects.filter(pk=hook.pk).update(url=rx.url_for("hang"))
    assert send(d) == "pending"
    a = Attempt.objects.get(delivery=d)
    assert a.error_class == "timeout" and a.response_status is None
    assert "did not answer within 1 s" in a.error


def test_a_slow_endpoint_within_the_deadline_succeeds_and_its_duration_is_recorded(make_webhook, rx, make_delivery):
    d = make_delivery(make_webhook(rx.url_for("slow:0.3")))
    assert send(d) == "success"
    assert Attempt.objects.get(delivery=d).duration_ms >= 300


def test_connection_refused_is_retried(make_webhook, make_delivery):
    d = make_delivery(make_webhook(refused_url()))
    assert send(d) == "pending"
    a = Attempt.objects.get(delivery=d)
    assert a.error_class == "connect_error" and "connection refused" in a.error


def test_a_dropped_connection_is_retried(make_webhook, rx, make_delivery):
    d = make_delivery(make_webhook(rx.url_for("close")))
    assert send(d) == "pending"
    assert Attempt.objects.get(delivery=d).error_class == "connect_error"


def test_a_huge_response_is_stored_truncated_to_64_kib(make_webhook, rx, make_delivery):
    d = make_delivery(make_webhook(rx.url_for("huge:5000000")))
    assert send(d) == "success"
    a = Attempt.objects.get(delivery=d)
    assert len(a.response_body) == 65536 and a.response_truncated


def test_an_address_that_became_private_is_blocked_at_send_time(hook, rx, make_delivery, settings):
    d = make_delivery(hook)
    settings.OPTIO_ALLOW_PRIVATE_URLS = False  # as if DNS now pointed the name at a private address
    assert send(d) == "pending"
    a = Attempt.objects.get(delivery=d)
    assert a.error_class == "blocked" and "loopback" in a.error
    assert rx.requests == []


def test_attempt_records_redact_signatures(hook, rx, make_delivery):
    d = make_delivery(hook)
    send(d)
    a = Attempt.objects.get(delivery=d)
    assert a.request_headers["X-Optio-Signature"] == "[redacted]"
    assert a.request_headers["webhook-signature"] == "[redacted]"
    assert a.request_headers["X-Optio-Event"] == "task.completed"
    assert a.request_headers["webhook-id"] == d.public_id
    assert rx.requests[0].headers["x-optio-signature"] not in str(a.request_headers)
    assert SECRET not in str(a.__dict__)


def test_the_schedule_with_a_frozen_clock(hook, rx, make_delivery):
    rx.default = "503"
    with time_machine.travel(datetime(2025, 1, 15, 10, 30, tzinfo=UTC), tick=False) as clock:
        d = make_delivery(hook)
        for step in (5, 300, 1800, 7200, 18000, 36000, 36000):
            assert send(d) == "pending"
            d.refresh_from_db()
            delay = (d.next_attempt_at - timezone.now()).total_seconds()
            assert step * 0.8 <= delay <= step * 1.2, (step, delay)
            clock.move_to(d.next_attempt_at - timedelta(seconds=1))
            assert send(d) is None  # not due yet: nothing is sent early
            clock.move_to(d.next_attempt_at)
        assert send(d) == "failed"  # the 8th attempt was the last
    d.refresh_from_db()
    assert (d.attempt_count, d.next_attempt_at, d.status_code) == (8, None, 503)
    assert d.finished_at is not None
    assert len(rx.requests) == 8


def test_the_schedule_is_configurable(hook, rx, make_delivery, settings):
    settings.OPTIO_WEBHOOK_RETRY_SCHEDULE = [1, 2]
    settings.OPTIO_WEBHOOK_RETRY_JITTER = 0
    rx.default = "500"
    with time_machine.travel(datetime(2025, 1, 15, tzinfo=UTC), tick=False) as clock:
        d = make_delivery(hook)
        assert send(d) == "pending"
        d.refresh_from_db()
        assert d.next_attempt_at == timezone.now() + timedelta(seconds=1)
        clock.move_to(d.next_attempt_at)
        assert send(d) == "pending"
        d.refresh_from_db()
        assert d.next_attempt_at == timezone.now() + timedelta(seconds=2)
        clock.move_to(d.next_attempt_at)
        assert send(d) == "failed"


def test_jitter_spreads_retries_within_20_percent(settings):
    delays = [delivery.next_delay(2) for _ in range(300)]
    assert all(240 <= x <= 360 for x in delays)
    assert min(delays) < 270 and max(delays) > 330  # actually spread, not a constant


def test_an_endpoint_failing_for_5_days_is_disabled_with_the_reason(hook, rx, make_delivery):
    rx.default = "500"
    with time_machine.travel(datetime(2025, 1, 1, tzinfo=UTC), tick=False) as clock:
        send(make_delivery(hook))
        hook.refresh_from_db()
        assert hook.failing_since == timezone.now() and hook.active
        clock.shift(timedelta(days=4, hours=23))
        send(make_delivery(hook))
        hook.refresh_from_db()
        assert hook.active
        clock.shift(timedelta(hours=2))
        send(make_delivery(hook))
    hook.refresh_from_db()
    assert not hook.active
    assert "every delivery failed for 5 days" in hook.disabled_reason
    assert "The endpoint answered 500." in hook.disabled_reason


def test_one_success_resets_the_failing_clock(hook, rx, make_delivery):
    rx.plan("500", "200")
    send(make_delivery(hook))
    hook.refresh_from_db()
    assert hook.failing_since is not None
    send(make_delivery(hook))
    hook.refresh_from_db()
    assert hook.failing_since is None and hook.last_success_at is not None and hook.health == "healthy"


def test_the_beat_job_disables_endpoints_whose_last_failure_is_old(hook):
    Webhook.objects.filter(pk=hook.pk).update(failing_since=timezone.now() - timedelta(days=6), last_error="boom")
    assert health.disable_long_failing() == 1
    hook.refresh_from_db()
    assert not hook.active and "Last error: boom" in hook.disabled_reason


def test_a_claimed_delivery_cannot_be_claimed_again(hook, make_delivery):
    d = make_delivery(hook)
    assert delivery._claim(d.pk, manual=False) is not None
    assert delivery._claim(d.pk, manual=False) is None
    assert delivery._claim(d.pk, manual=True) is None  # not even by hand while it is being sent
    d.refresh_from_db()
    assert (d.status, d.attempt_count) == ("sending", 1)


def test_an_expired_lease_is_taken_over_and_the_lost_attempt_recorded(hook, rx, make_delivery):
    d = make_delivery(hook)
    delivery._claim(d.pk, manual=False)  # a worker claims it and dies mid-request
    assert send(d) is None  # lease still running: nobody else may send
    Delivery.objects.filter(pk=d.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert send(d) == "success"
    attempts = list(Attempt.objects.filter(delivery=d).values_list("number", "error_class", "success"))
    assert attempts == [(1, "worker_lost", False), (2, "", True)]
    assert len(rx.requests) == 1


def test_a_manual_attempt_is_one_try_and_keeps_the_schedule(hook, rx, make_delivery):
    rx.plan("500", "500")
    d = make_delivery(hook)
    send(d)
    d.refresh_from_db()
    scheduled_for = d.next_attempt_at
    assert send(d, manual=True) == "pending"  # failed again, but still waiting for its retry
    d.refresh_from_db()
    assert d.next_attempt_at == scheduled_for and d.scheduled_attempts == 1
    assert send(d, manual=True) == "success"
    assert [a.trigger for a in d.attempts.all()] == ["scheduled", "manual", "manual"]


def test_a_manual_attempt_of_a_finished_delivery(hook, rx, make_delivery):
    d = make_delivery(hook)
    assert send(d) == "success"
    rx.plan("500")
    assert send(d, manual=True) == "failed"
    assert send(d, manual=True) == "success"
    assert len({r.body for r in rx.requests}) == 1 and len({r.headers["webhook-id"] for r in rx.requests}) == 1


class TestSweeper:
    @pytest.fixture
    def queued(self, monkeypatch):
        """Ids queued one by one (rescued leases), and drain jobs queued (due deliveries)."""
        ids: list[int] = []
        monkeypatch.setattr(delivery, "enqueue_ids", lambda pks, **kw: ids.extend(pks))
        return ids

    @pytest.fixture
    def drains(self, monkeypatch):
        jobs: list[int] = []
        monkeypatch.setattr(delivery, "enqueue_drains", lambda n, **kw: jobs.append(n))
        return jobs

    def test_picks_what_has_no_message_and_leaves_what_is_in_line(self, hook, make_delivery, queued, drains):
        in_line = make_delivery(hook)  # created with a message: enqueued_at set
        Delivery.objects.filter(pk=in_line.pk).update(enqueued_at=timezone.now())
        lost = make_delivery(hook)  # the broker was down when it was created
        long_retry = make_delivery(hook)
        Delivery.objects.filter(pk=long_retry.pk).update(
            scheduled_attempts=3,
            enqueued_at=timezone.now() - timedelta(hours=2),
            next_attempt_at=timezone.now() - timedelta(seconds=1),
        )
        not_yet = make_delivery(hook)
        Delivery.objects.filter(pk=not_yet.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))
        assert sweeper.enqueue_due() == 2
        assert drains == [1] and queued == []  # one drain job claims both: no message per delivery
        stamped = Delivery.objects.filter(enqueued_at__gte=timezone.now() - timedelta(seconds=5))
        assert {lost.pk, long_retry.pk, in_line.pk} == set(stamped.values_list("pk", flat=True))
        assert sweeper.enqueue_due() == 0  # stamped: the next sweep does not queue them again

    def test_queues_drains_in_proportion_to_what_is_due(self, hook, make_delivery, queued, drains, settings):
        settings.OPTIO_WEBHOOK_BATCH_SIZE = 2
        for _ in range(5):
            make_delivery(hook)
        assert sweeper.enqueue_due() == 5 and drains == [3]

    def test_requeues_a_message_that_waited_too_long(self, hook, make_delivery, queued, drains, settings):
        d = make_delivery(hook)
        Delivery.objects.filter(pk=d.pk).update(enqueued_at=timezone.now() - timedelta(minutes=2))
        assert sweeper.enqueue_due() == 1

    def test_picks_expired_leases_only(self, hook, make_delivery, queued, drains):
        alive, dead = make_delivery(hook), make_delivery(hook)
        Delivery.objects.update(enqueued_at=timezone.now() - timedelta(seconds=30))
        delivery._claim(alive.pk, manual=False)
        delivery._claim(dead.pk, manual=False)
        Delivery.objects.filter(pk=dead.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
        assert sweeper.enqueue_due() == 1 and queued == [dead.pk] and drains == []


def test_the_sweeper_sends_a_due_retry_end_to_end(hook, rx, make_delivery, settings):
    settings.OPTIO_WEBHOOK_COUNTDOWN_MAX = 0  # no countdown message: only the sweeper brings the retry
    rx.plan("500")
    d = make_delivery(hook)
    send(d)
    assert sweeper.enqueue_due() == 0  # not due yet
    with time_machine.travel(timezone.now() + timedelta(seconds=7)):
        assert sweeper.enqueue_due() == 1  # eager Celery: the delivery task runs right here
    d.refresh_from_db()
    assert d.status == "success" and len(rx.requests) == 2


def test_retention_deletes_old_attempts_and_finished_deliveries_in_batches(hook, rx, make_delivery, settings):
    settings.OPTIO_WEBHOOK_PURGE_BATCH = 2
    with time_machine.travel(timezone.now() - timedelta(days=31), tick=False):
        old_done = [make_delivery(hook) for _ in range(3)]
        for d in old_done:
            send(d)
        old_pending = make_delivery(hook)
        Delivery.objects.filter(pk=old_pending.pk).update(next_attempt_at=timezone.now() + timedelta(days=40))
    recent = make_delivery(hook)
    send(recent)
    deleted = sweeper.purge_old()
    assert deleted == 6  # 3 attempts + 3 deliveries
    assert set(Delivery.objects.values_list("pk", flat=True)) == {old_pending.pk, recent.pk}
    assert Attempt.objects.filter(delivery=recent).count() == 1
