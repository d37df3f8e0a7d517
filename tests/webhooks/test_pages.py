"""Settings → Webhooks pages: list with health, create/edit, send test, deliveries, a delivery, redeliver."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests import services
from tests.webhooks.conftest import SECRET
from webhooks.models import Attempt, Delivery, Webhook

FORM = {"url": "", "description": "Ops", "events": ["task.completed", "task.failed"], "secret": SECRET, "active": "on"}


@pytest.fixture
def browser_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_pages_need_a_signed_in_person(client, db):
    for path in ("/settings/webhooks/", "/settings/webhooks/new/"):
        resp = client.get(path)
        assert resp.status_code == 302 and resp.url.startswith("/login/")


def test_empty_list_explains_how_to_add_one(browser_client):
    page = browser_client.get("/settings/webhooks/").content.decode()
    assert "No webhooks yet" in page and "POST /api/webhooks" in page


def test_create_from_the_form(browser_client, rx, fast_settings):
    resp = browser_client.post("/settings/webhooks/new/", {**FORM, "url": rx.url})
    hook = Webhook.objects.get()
    assert resp.status_code == 302 and resp.url == f"/settings/webhooks/{hook.pk}/"
    assert hook.events == ["task.completed", "task.failed"] and hook.signing_secrets() == [SECRET]
    page = browser_client.get("/settings/webhooks/").content.decode()
    assert rx.url in page and "no deliveries yet" in page and SECRET not in page


def test_form_errors_are_shown_next_to_the_field(browser_client, settings):
    settings.OPTIO_ALLOW_PRIVATE_URLS = False
    resp = browser_client.post("/settings/webhooks/new/", {**FORM, "url": "http://169.254.169.254/", "events": []})
    page = resp.content.decode()
    assert resp.status_code == 200 and Webhook.objects.count() == 0
    assert "link-local address" in page and "This field is required" in page


def test_detail_shows_deliveries_and_the_htmx_filter_returns_only_rows(browser_client, hook, rx, emit):
    rx.plan_event("task.created", "500")
    emit()
    page = browser_client.get(f"/settings/webhooks/{hook.pk}/").content.decode()
    assert "task.created" in page and "task.queued" in page and "Send test" in page
    assert "healthy" in page and "next try in" in page  # the 500 waits for its retry
    rows = browser_client.get(
        f"/settings/webhooks/{hook.pk}/?status=success", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="deliveries"
    ).content.decode()
    assert "<html" not in rows and "task.queued" in rows and "task.created" not in rows


def test_edit_rotates_the_secret_only_when_a_new_one_is_given(browser_client, hook):
    url = f"/settings/webhooks/{hook.pk}/"
    base = {"url": hook.url, "events": ["*"], "active": "on", "description": "renamed"}
    assert browser_client.post(url, {**base, "secret": ""}).status_code == 302
    hook.refresh_from_db()
    assert hook.description == "renamed" and not hook.rotating
    browser_client.post(url, {**base, "secret": "whsec_bmV3LXNlY3JldC1ieXRlcy0xMjM0"})
    hook.refresh_from_db()
    assert hook.rotating and len(hook.signing_secrets()) == 2
    assert "Secret rotation in progress" in browser_client.get(url).content.decode()


def test_send_test_with_htmx_shows_the_result_inline(browser_client, hook, rx, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        resp = browser_client.post(f"/settings/webhooks/{hook.pk}/test/", HTTP_HX_REQUEST="true")
    fragment = resp.content.decode()
    d = Delivery.objects.get(event_name="webhook.test")
    assert d.public_id in fragment and "<html" not in fragment
    assert rx.wait_for(1)[0].headers["x-optio-event"] == "webhook.test"
    polled = browser_client.get(
        f"/settings/webhooks/deliveries/{d.public_id}/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="test-result"
    ).content.decode()
    assert "success" in polled and "HTTP 200" in polled


def test_delivery_page_shows_request_and_response_and_redelivers(browser_client, hook, rx, emit):
    rx.plan_event("task.created", "503")
    emit()
    d = Delivery.objects.get(event_name="task.created")
    url = f"/settings/webhooks/deliveries/{d.public_id}/"
    page = browser_client.get(url).content.decode()
    assert "X-Optio-Signature: [redacted]" in page and "status 503" in page and d.public_id in page
    assert SECRET not in page and _sent(rx, "task.created").headers["x-optio-signature"] not in page
    resp = browser_client.post(url + "redeliver/")
    assert resp.status_code == 302
    assert list(Attempt.objects.filter(delivery=d).values_list("trigger", flat=True)) == ["scheduled", "manual"]


def test_a_disabled_endpoint_offers_to_replay_what_it_missed(
    browser_client, hook, rx, emit, django_capture_on_commit_callbacks
):
    Webhook.objects.filter(pk=hook.pk).update(
        active=False, disabled_at=timezone.now() - timedelta(minutes=5), disabled_reason="It answered 410 Gone."
    )
    emit()
    page = browser_client.get(f"/settings/webhooks/{hook.pk}/").content.decode()
    assert "It answered 410 Gone." in page and "Enable" in page
    page = browser_client.post(f"/settings/webhooks/{hook.pk}/", {"action": "enable"}).content.decode()
    assert "missed <strong>2</strong> events" in page and "Replay them" in page
    assert "<strong>Disabled.</strong>" not in page  # the page shows the enabled state
    hook.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        resp = browser_client.post(
            f"/settings/webhooks/{hook.pk}/replay/", {"since": (timezone.now() - timedelta(minutes=6)).isoformat()}
        )
    assert resp.status_code == 302
    assert len(rx.requests) == 2


def test_delete(browser_client, hook):
    resp = browser_client.post(f"/settings/webhooks/{hook.pk}/delete/")
    assert resp.status_code == 302 and not Webhook.objects.exists()


@pytest.mark.browser
def test_in_chromium_create_and_send_a_test(live_server, admin_user, rx, fast_settings, tmp_path):
    chromium = services.require_chromium()
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    args += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args)
        try:
            page = browser.new_page()
            page.goto(live_server.url + "/login/?next=/settings/webhooks/new/")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", "correct horse battery")
            page.click("button[type=submit]")
            page.fill("input[name=url]", rx.url)
            page.check("input[value='task.*']")
            page.click("text=Generate")
            secret = page.input_value("input[name=secret]")
            assert secret.startswith("whsec_")
            page.click("text=Create webhook")
            page.wait_for_selector("text=Webhook created")
            page.click("text=Send test")
            page.wait_for_selector("#test-result .state-success", timeout=15000)
            page.screenshot(path=str(tmp_path / "webhook.png"), full_page=True)
        finally:
            browser.close()
    (r,) = rx.wait_for(1)
    from standardwebhooks import Webhook as StandardVerifier

    StandardVerifier(secret).verify(r.body, r.headers)


def _sent(rx, event: str):
    return next(r for r in rx.requests if r.headers["x-optio-event"] == event)
