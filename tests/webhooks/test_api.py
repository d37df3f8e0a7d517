"""REST API of outgoing webhooks: create, read, update, delete, deliveries, test, redeliver, replay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks import Webhook as StandardVerifier

from optio.models import Event
from tests.webhooks.conftest import SECRET
from webhooks.models import Attempt, Delivery, Webhook

SEED_EXAMPLE = {"url": "https://example.com/hook", "events": ["task.completed", "task.failed"], "secret": "..."}


@pytest.fixture
def public_only(settings):
    settings.OPTIO_ALLOW_PRIVATE_URLS = False


@pytest.fixture
def created(api, rx, fast_settings):
    resp = api.post("/api/webhooks", {"url": rx.url, "events": ["*"], "secret": SECRET, "description": "CI"})
    assert resp.status_code == 201, resp.content
    return resp.json()


def _no_secret_in(resp, secret=SECRET):
    assert secret not in resp.content.decode()


def test_the_seed_example_body_works_as_written(api, monkeypatch):
    # example.com must resolve for the URL check; DNS is the one thing not available here.
    import socket

    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, *a, **k: (
            [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))]
            if host == "example.com"
            else real(host, *a, **k)
        ),
    )
    resp = api.post("/api/webhooks", SEED_EXAMPLE)
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["url"] == "https://example.com/hook"
    assert body["events"] == ["task.completed", "task.failed"]
    assert body["active"] is True and body["secret"] == "••••••••"
    assert body["health"]["status"] == "new"
    stored = Webhook.objects.get(pk=body["id"])
    assert "..." not in stored.secret_encrypted and stored.signing_secrets() == ["..."]


def test_create_read_list_and_delete(api, created, rx):
    assert created["secret"] == "whsec_••••••••"
    assert created["description"] == "CI" and created["secretRotationEndsAt"] is None
    one = api.get(f"/api/webhooks/{created['id']}")
    assert one.status_code == 200 and one.json() == created
    listing = api.get("/api/webhooks").json()
    assert listing["count"] == 1 and listing["results"][0]["id"] == created["id"]
    _no_secret_in(one)
    assert api.delete(f"/api/webhooks/{created['id']}").status_code == 204
    assert api.get(f"/api/webhooks/{created['id']}").status_code == 404


@pytest.mark.parametrize(
    "payload, field, words",
    [
        ({"url": "http://10.0.0.8/hook"}, "url", "private network address"),
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "url", "link-local"),
        ({"url": "http://localhost:9000/hook"}, "url", "loopback"),
        ({"url": "http://[::ffff:127.0.0.1]/hook"}, "url", "loopback"),
        ({"url": "ftp://example.com/hook"}, "url", "Only http:// and https://"),
        ({"events": ["task.exploded"]}, "events", "not an event Optio sends"),
        ({"events": []}, "events", ""),
        ({"secret": ""}, "secret", ""),
        ({"secret": "whsec_###"}, "secret", "base64"),
    ],
)
def test_bad_input_is_a_400_naming_the_reason(api, public_only, payload, field, words):
    body = {"url": "http://93.184.215.14/hook", "events": ["task.completed"], "secret": "s3cret", **payload}
    resp = api.post("/api/webhooks", body)
    assert resp.status_code == 400, resp.content
    data = resp.json()
    assert field in data["details"]
    assert words in data["error"]
    assert Webhook.objects.count() == 0


def test_missing_fields_are_a_400(api):
    resp = api.post("/api/webhooks", {})
    assert resp.status_code == 400
    assert set(resp.json()["details"]) >= {"url", "events", "secret"}


def test_every_webhooks_route_needs_the_token(db, created):
    client = APIClient()
    patterns = []

    def walk(resolver, prefix=""):
        for p in resolver.url_patterns:
            if isinstance(p, URLResolver):
                walk(p, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                patterns.append(prefix + str(p.pattern))

    walk(get_resolver())
    ours = [p for p in patterns if p.startswith("api/webhooks")]
    assert len(ours) == 7
    d = Delivery.objects.first()
    for pattern in ours:
        path = "/" + pattern.replace("<int:pk>", str(created["id"])).replace("<str:delivery_id>", "msg_x")
        for method in ("get", "post", "patch", "delete"):
            resp = getattr(client, method)(path)
            assert resp.status_code in (401, 405), (method, path, resp.status_code)
            if resp.status_code == 401:
                assert "Bearer" in resp.json()["error"]
    assert d is None


def test_patch_updates_fields_and_keeps_the_secret_masked(api, created):
    resp = api.patch(f"/api/webhooks/{created['id']}", {"events": ["task.*"], "description": "new"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["events"] == ["task.*"] and body["description"] == "new" and body["replayOffer"] is None
    assert api.patch(f"/api/webhooks/{created['id']}", {"events": ["nope"]}).status_code == 400
    assert api.patch("/api/webhooks/999999", {"description": "x"}).status_code == 404


def test_secret_rotation_keeps_the_old_secret_signing_for_24_hours(api, created, rx, emit):
    new = "whsec_bmV3LXNlY3JldC1ieXRlcy0xMjM0"
    resp = api.patch(f"/api/webhooks/{created['id']}", {"secret": new})
    assert resp.status_code == 200
    ends = resp.json()["secretRotationEndsAt"]
    assert ends is not None
    _no_secret_in(resp, new)
    emit()
    r = rx.wait_for(1)[0]
    StandardVerifier(SECRET).verify(r.body, r.headers)
    StandardVerifier(new).verify(r.body, r.headers)
    assert len(r.headers["webhook-signature"].split()) == 2
    Webhook.objects.filter(pk=created["id"]).update(previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
    assert api.get(f"/api/webhooks/{created['id']}").json()["secretRotationEndsAt"] is None
    hook = Webhook.objects.get(pk=created["id"])
    assert hook.signing_secrets() == [new]


def test_deliveries_are_listed_newest_first_and_filtered(api, created, rx, emit):
    rx.plan_event("task.created", "500")  # task.created fails; task.queued succeeds
    emit()
    url = f"/api/webhooks/{created['id']}/deliveries"
    listing = api.get(url).json()
    assert listing["count"] == 2
    assert [d["event"] for d in listing["results"]] == ["task.queued", "task.created"]
    first = listing["results"][1]
    assert first["status"] == "pending" and first["statusCode"] == 500 and first["attemptCount"] == 1
    assert first["id"].startswith("msg_") and first["eventId"].startswith("evt_")
    assert [d["event"] for d in api.get(url + "?status=pending").json()["results"]] == ["task.created"]
    assert [d["event"] for d in api.get(url + "?event=task.queued").json()["results"]] == ["task.queued"]
    assert api.get(url + "?pageSize=1").json()["next"] is not None
    bad = api.get(url + "?status=lost")
    assert bad.status_code == 400 and "pending, sending, success, failed" in bad.json()["error"]
    assert api.get("/api/webhooks/999999/deliveries").status_code == 404


def test_delivery_detail_shows_attempts_without_secrets(api, created, rx, emit):
    rx.plan_event("task.created", "503")
    emit()
    d = Delivery.objects.get(event_name="task.created")
    resp = api.get(f"/api/webhooks/deliveries/{d.public_id}")
    assert resp.status_code == 200
    body = resp.json()
    assert body["payload"]["event"] == "task.created" and body["payload"]["id"] == d.event.public_id
    (a,) = body["attempts"]
    assert a["responseStatus"] == 503 and a["errorClass"] == "http_status" and a["trigger"] == "scheduled"
    assert a["requestHeaders"]["X-Optio-Signature"] == "[redacted]"
    assert a["durationMs"] is not None and a["responseBody"] == "status 503"
    _no_secret_in(resp)
    assert _sent(rx, "task.created").headers["x-optio-signature"] not in resp.content.decode()
    assert api.get("/api/webhooks/deliveries/msg_nope").status_code == 404


def test_redeliver_sends_the_same_bytes_as_a_manual_attempt(api, created, rx, emit):
    emit()
    d = Delivery.objects.get(event_name="task.created")
    resp = api.post(f"/api/webhooks/deliveries/{d.public_id}/redeliver")
    assert resp.status_code == 202
    assert resp.json()["attemptCount"] == 2
    originals = [r for r in rx.requests if r.headers["webhook-id"] == d.public_id]
    assert len(originals) == 2 and originals[0].body == originals[1].body
    assert [a.trigger for a in d.attempts.all()] == ["scheduled", "manual"]


def test_redeliver_while_sending_is_a_409(api, created, emit):
    emit()
    d = Delivery.objects.get(event_name="task.created")
    Delivery.objects.filter(pk=d.pk).update(status="sending", claimed_until=timezone.now() + timedelta(minutes=1))
    resp = api.post(f"/api/webhooks/deliveries/{d.public_id}/redeliver")
    assert resp.status_code == 409 and "being sent right now" in resp.json()["error"]


def test_send_test_goes_through_the_normal_pipeline(api, created, rx, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        resp = api.post(f"/api/webhooks/{created['id']}/test")
    assert resp.status_code == 202
    body = resp.json()
    assert body["event"] == "webhook.test" and body["id"].startswith("msg_")
    event = Event.objects.get(name="webhook.test")
    assert event.dispatched_at is not None  # dispatched like every other event
    (r,) = rx.wait_for(1)
    assert r.headers["x-optio-event"] == "webhook.test" and r.headers["webhook-id"] == body["id"]
    payload = StandardVerifier(SECRET).verify(r.body, r.headers)
    assert payload["data"]["webhookId"] == created["id"]
    assert Delivery.objects.get(public_id=body["id"]).status == "success"


def test_a_test_reaches_only_its_own_webhook_even_when_others_take_everything(
    api, created, make_webhook, rx, django_capture_on_commit_callbacks
):
    other = make_webhook(rx.url_for("200"), events=["*"])
    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"/api/webhooks/{created['id']}/test")
    assert Delivery.objects.filter(webhook=other).count() == 0
    assert len(rx.requests) == 1


def test_reenabling_offers_a_replay_and_replay_sends_what_was_missed(
    api, created, rx, emit, django_capture_on_commit_callbacks
):
    hook_id = created["id"]
    rx.default = "500"
    emit("First")  # two deliveries that fail...
    Delivery.objects.filter(webhook_id=hook_id).update(
        status="failed", next_attempt_at=None, finished_at=timezone.now()
    )
    api.patch(f"/api/webhooks/{hook_id}", {"active": False})
    emit("While off")  # ...and two events while disabled: no deliveries
    assert Delivery.objects.filter(webhook_id=hook_id).count() == 2
    rx.default = "200"
    resp = api.patch(f"/api/webhooks/{hook_id}", {"active": True})
    offer = resp.json()["replayOffer"]
    assert offer["failedDeliveries"] == 2 and offer["missedEvents"] == 2
    sent_before = len(rx.requests)
    with django_capture_on_commit_callbacks(execute=True):
        replay = api.post(f"/api/webhooks/{hook_id}/replay", {"since": offer["since"]})
    assert replay.status_code == 202, replay.content
    assert replay.json() | {"since": None} == {
        "since": None,
        "failedDeliveries": 2,
        "missedEvents": 2,
        "truncated": False,
    }
    assert len(rx.requests) == sent_before + 4
    assert Delivery.objects.filter(webhook_id=hook_id, status="success").count() == 4
    assert Attempt.objects.filter(delivery__webhook_id=hook_id, trigger="manual").count() == 2


def test_replay_input_errors(api, created):
    url = f"/api/webhooks/{created['id']}/replay"
    assert api.post(url, {}).status_code == 400
    assert api.post(url, {"since": "yesterday"}).status_code == 400
    old = api.post(url, {"since": (timezone.now() - timedelta(days=90)).isoformat()})
    assert old.status_code == 400 and "within the last 30 days" in old.json()["error"]
    api.patch(f"/api/webhooks/{created['id']}", {"active": False})
    off = api.post(url, {"since": timezone.now().isoformat()})
    assert off.status_code == 409 and "enable it" in off.json()["error"]


def test_schema_documents_the_webhook_routes(api):
    resp = api.get("/api/schema", HTTP_ACCEPT="application/json")
    assert resp.status_code == 200
    text = resp.content.decode()
    for path in ("/api/webhooks/{id}/deliveries", "/api/webhooks/deliveries/{delivery_id}/redeliver"):
        assert path in text


def test_secrets_follow_an_encryption_key_rotation(created, settings):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    from optio import crypto

    old_key = Fernet.generate_key().decode()
    new_key = Fernet.generate_key().decode()
    settings.CONFIG = type(settings.CONFIG)(**{**settings.CONFIG.__dict__, "secret_keys": (old_key,)})
    crypto.reset_keys()
    hook = Webhook.objects.get(pk=created["id"])
    hook.secret_encrypted = crypto.encrypt(SECRET)
    hook.save()
    settings.CONFIG = type(settings.CONFIG)(**{**settings.CONFIG.__dict__, "secret_keys": (new_key, old_key)})
    crypto.reset_keys()
    call_command("rotate_webhook_secrets")
    settings.CONFIG = type(settings.CONFIG)(**{**settings.CONFIG.__dict__, "secret_keys": (new_key,)})
    crypto.reset_keys()
    assert Webhook.objects.get(pk=created["id"]).signing_secrets() == [SECRET]


def _sent(rx, event: str):
    return next(r for r in rx.requests if r.headers["x-optio-event"] == event)
