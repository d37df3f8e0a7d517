"""Task events reach subscribed endpoints through the real spine: outbox → dispatch → delivery → HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from django.db import transaction
from standardwebhooks import Webhook as StandardVerifier

from optio import dispatch, events, lifecycle
from optio.models import Event, Task
from tests.webhooks.conftest import SECRET
from webhooks import delivery
from webhooks.models import Attempt, Delivery


def test_task_event_arrives_signed_in_the_documented_wire_format(hook, rx, emit):
    task = emit(to=("running", "completed"))
    received = rx.wait_for(4)
    # One transaction's events share a batch, sent concurrently: they may arrive in any order.
    by_name = {r.headers["x-optio-event"]: r for r in received}
    assert sorted(by_name) == ["task.completed", "task.created", "task.queued", "task.running"]
    last = by_name["task.completed"]
    event = Event.objects.get(task=task, name="task.completed")
    assert last.body == json.dumps(event.envelope(), separators=(",", ":"), ensure_ascii=False).encode()
    assert last.headers["content-type"] == "application/json"
    body = StandardVerifier(SECRET).verify(last.body, last.headers)  # independent verifier
    assert body["id"] == event.public_id and body["event"] == "task.completed"
    assert body["data"]["taskId"] == str(task.pk) and body["data"]["fromState"] == "running"
    assert last.headers["x-optio-signature"] == hmac.new(SECRET.encode(), last.body, hashlib.sha256).hexdigest()
    d = Delivery.objects.get(event=event)
    assert last.headers["webhook-id"] == d.public_id
    assert (d.status, d.success, d.status_code, d.attempt_count) == ("success", True, 200, 1)


def test_a_webhook_receives_only_what_it_subscribes_to(make_webhook, rx, emit):
    exact = make_webhook(rx.url_for("200") + "?exact", events=["task.completed"])
    prefix = make_webhook(rx.url_for("200") + "?prefix", events=["task.*"])
    everything = make_webhook(rx.url_for("200") + "?all", events=["*"])
    off = make_webhook(rx.url_for("200") + "?off", events=["*"], active=False)
    emit(to=("running", "failed"))
    names = {
        h.pk: sorted(Delivery.objects.filter(webhook=h).values_list("event_name", flat=True))
        for h in (exact, prefix, everything, off)
    }
    all_four = sorted(["task.created", "task.queued", "task.running", "task.failed"])
    assert names[exact.pk] == []
    assert names[prefix.pk] == all_four and names[everything.pk] == all_four
    assert names[off.pk] == []
    assert len(rx.requests) == 8


def test_redispatch_creates_nothing_twice_and_sends_nothing_twice(hook, rx, emit, django_capture_on_commit_callbacks):
    emit()
    rx.wait_for(2)
    event = Event.objects.get(name="task.created")
    with django_capture_on_commit_callbacks(execute=True):
        delivery.on_event(event)  # what a second dispatch of the same event does
        Event.objects.filter(pk=event.pk).update(dispatched_at=None)
        dispatch.dispatch(event.seq)  # the whole fan-out again, as the sweeper would
    assert Delivery.objects.filter(event=event).count() == 1
    assert len(rx.requests) == 2


def test_rollback_sends_nothing(hook, rx, repo, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        lifecycle.create_task(repo, "Never happened", "p")
        raise RuntimeError("the caller's transaction fails after the state change")
    assert Event.objects.count() == 0
    assert Delivery.objects.count() == 0
    assert rx.requests == []


def test_a_payload_over_256_kib_is_refused_with_a_clear_error(hook, rx, repo, django_capture_on_commit_callbacks):
    task = Task.objects.create(repo=repo, title="Big", prompt="p", state="failed", error="x" * 300_000)
    with django_capture_on_commit_callbacks(execute=True):
        events.publish("task.failed", task, from_state="running")
    failed = Delivery.objects.get()
    assert failed.status == "failed" and "limit is 262144 bytes" in failed.last_error
    assert Attempt.objects.filter(delivery=failed).count() == 0
    assert rx.requests == []
