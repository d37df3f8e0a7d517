"""The Issues page in Chromium against a live server: filter, click "Assign to Optio", see the task."""

from __future__ import annotations

import os
import shutil

import pytest
from django.conf import settings as django_settings
from django.test import Client

from optio.models import Repo, Task
from tests.services import require_chromium

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.browser
def test_filter_then_assign_updates_the_row_in_place(live_server, admin_user, gh, github_token, tmp_path):
    chromium = require_chromium()
    from playwright.sync_api import expect, sync_playwright

    webapp = Repo.objects.create(url="https://github.com/acme/webapp")
    Repo.objects.create(url="https://github.com/acme/api")
    gh.add_issue("acme/webapp", "Login fails on Safari", labels=["bug", "ui"], assignee="alice")
    gh.add_issue("acme/webapp", "Add dark mode", labels=["feature"])
    gh.add_issue("acme/api", "Rate limit the login endpoint", labels=["bug"])
    gh.add_issue("acme/api", "Bump Django", pull_request=True)
    session = Client()
    session.force_login(admin_user)
    cookie = session.cookies[django_settings.SESSION_COOKIE_NAME].value
    # The ORM stays out of the Playwright block: its event loop makes Django refuse sync queries there.
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 720})
            context.add_cookies(
                [{"name": django_settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}]
            )
            page = context.new_page()
            page.goto(f"{live_server.url}/issues/")
            rows = page.locator("#issues-table tbody tr")
            expect(rows).to_have_count(3)
            expect(page.get_by_text("Bump Django")).to_have_count(0)

            page.get_by_label("Label").select_option("bug")
            expect(rows).to_have_count(2)
            page.get_by_label("Search titles").fill("safari")
            page.get_by_label("Search titles").press("Enter")
            expect(rows).to_have_count(1)
            assert "label=bug" in page.url and "q=safari" in page.url

            row = page.locator(f"#issue-{webapp.pk}-1")
            row.get_by_role("button", name="Assign to Optio").click()
            state = row.locator("td.action a.state")
            expect(state).to_have_text("queued")
            expect(row.get_by_role("button", name="Assign to Optio")).to_have_count(0)
            page.screenshot(path=str(tmp_path / "issues.png"), full_page=True)
            task_href = state.get_attribute("href")
        finally:
            browser.close()

    if os.environ.get("OPTIO_SCREENSHOT_DIR"):
        shutil.copy(tmp_path / "issues.png", os.environ["OPTIO_SCREENSHOT_DIR"])
    task = Task.objects.get()
    assert task_href == f"/tasks/{task.pk}/"
    assert (task.title, task.ticket_external_id, task.state) == ("Login fails on Safari", "1", "queued")
