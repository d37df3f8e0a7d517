"""The repository pages in headless Chromium: connect, enable Slack, "Send test" inline via htmx."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth import get_user_model
from django.db import connections

from optio.models import Repo
from tests.services import require_chromium

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture
def page(live_server, monkeypatch):
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls below are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    get_user_model().objects.create_superuser("admin", "admin@example.com", "correct horse battery")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.set_default_timeout(10_000)
        page.goto(live_server.url + "/login/?next=/settings/repos/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "correct horse battery")
        page.click("button[type=submit]")
        page.wait_for_url("**/settings/repos/")
        yield page
        browser.close()
        # ORM calls made while Playwright's loop runs get their own connection; close it, or
        # PostgreSQL refuses to drop the test database at the end of the session.
        connections.close_all()


def shot(page, tmp_path, name: str) -> None:
    folder = os.environ.get("OPTIO_SCREENSHOT_DIR") or str(tmp_path)
    page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)


@pytest.mark.browser
def test_connect_enable_slack_and_send_a_test(page, live_server, slack, tmp_path):
    page.fill("#id_repo_url", "github.com/Acme/WebApp")
    page.click("button:text-is('Connect')")
    page.wait_for_selector("#repo-list")
    assert "Connected acme/webapp." in page.content()
    shot(page, tmp_path, "repos")

    page.click("#repo-list >> text=acme/webapp")
    page.wait_for_selector("#slack-form")
    hook = slack.webhook_url()
    page.check("input[name=slack_enabled]")
    page.fill("#id_slack_webhook_url", hook)
    page.uncheck("input[value=pr_opened]")
    page.click("button:text-is('Save Slack settings')")
    page.wait_for_selector("#slack-masked-url")
    assert hook.rsplit("/", 1)[1] not in page.content()  # only the masked form is on the page
    repo = Repo.objects.get()
    assert repo.slack_enabled and repo.slack_notify_on == ["completed", "failed", "needs_attention"]

    page.click("button:text-is('Send test')")
    page.wait_for_selector("#slack-test-result.ok")
    assert "Sent." in page.inner_text("#slack-test-result")
    assert len(slack.messages(hook)) == 1
    assert page.url.endswith(f"/settings/repos/{repo.pk}/")  # answered inline, no navigation

    slack.set_hook(hook, "invalid_token")
    page.click("button:text-is('Send test')")
    page.wait_for_selector("#slack-test-result.error")
    assert "invalid_token" in page.inner_text("#slack-test-result")
    shot(page, tmp_path, "repo_settings")

    # A delivery that failed for good is on the page after a reload, and on the list.
    from integrations.slack import client, services

    services.record_error(repo, client.interpret(403, "invalid_token").message)
    page.reload()
    assert "invalid_token" in page.inner_text("#slack-last-error")
    shot(page, tmp_path, "repo_settings_error")
    page.goto(live_server.url + "/settings/repos/")
    assert page.inner_text("#repo-list .state") == "error"
