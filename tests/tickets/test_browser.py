"""Settings → Ticket providers in headless Chromium: preview, sync now, toggle, the per-source form."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from optio.models import Repo, Task
from tests.services import require_chromium
from tickets import services
from tickets.models import TicketProvider

from .conftest import LINEAR_KEY

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def test_providers_page_in_chromium(live_server, client, admin_user, linear, team, tmp_path):
    chromium = require_chromium()
    from playwright.sync_api import expect, sync_playwright

    # Everything that touches the database happens before Playwright starts its event loop.
    repo = Repo.objects.create(url="https://github.com/acme/webapp")
    linear.add_issue(team, "Add email validation", description="Validate the signup form.")
    linear.add_issue(team, "Fix the footer", labels=["repo:acme/elsewhere"])
    provider = services.create_provider("linear", {"apiKey": LINEAR_KEY, "teamId": "ENG", "repoUrl": repo.url}).provider
    broken = services.create_provider("github", {"repos": [repo.url], "labels": ["optio"]}).provider
    TicketProvider.objects.filter(pk=broken.pk).update(
        consecutive_failures=2,
        last_error="No GITHUB_TOKEN secret is set for acme/webapp, so Optio cannot read GitHub.",
        last_error_kind="config",
    )
    client.force_login(admin_user)
    cookie = {"name": django_settings.SESSION_COOKIE_NAME, "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
              "url": live_server.url}  # fmt: skip
    shots = Path(os.environ.get("OPTIO_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_cookies([cookie])
            page = context.new_page()
            page.goto(f"{live_server.url}/settings/providers/")
            row = page.locator(f"#provider-{provider.pk}")
            expect(row).to_contain_text("team ENG → github.com/acme/webapp")
            expect(page.locator(f"#provider-{broken.pk}")).to_contain_text("No GITHUB_TOKEN secret is set")

            row.get_by_role("button", name="Preview").click()
            preview = page.locator(f"#preview-{provider.pk}")
            expect(preview).to_contain_text("1 ticket would become a task now")
            expect(preview).to_contain_text("acme/elsewhere is not a connected repository")
            page.screenshot(path=str(shots / "ticket-providers-preview.png"), full_page=True)

            row.get_by_role("button", name="Sync now").click()
            expect(page.locator(f"#provider-{provider.pk}")).to_contain_text("Sync queued.")
            expect(page.locator(f"#provider-{provider.pk}")).to_contain_text("1 created")
            expect(page.locator(f"#provider-{provider.pk}")).to_contain_text("1 ticket skipped")

            page.locator(f"#provider-{broken.pk}").get_by_role("button", name="On").click()
            expect(page.locator(f"#provider-{broken.pk}")).to_contain_text("Disabled.")
            expect(page.locator(f"#provider-{broken.pk}").get_by_role("button", name="Sync now")).to_be_disabled()

            page.get_by_role("tab", name="Linear").click()
            expect(page.locator("#provider-form input[name=apiKey]")).to_be_visible()
            expect(page.locator("#provider-form textarea[name=repos]")).to_have_count(0)
            page.screenshot(path=str(shots / "ticket-providers.png"), full_page=True)
        finally:
            browser.close()

    assert Task.objects.filter(ticket_source="linear").count() == 1
    assert TicketProvider.objects.get(pk=broken.pk).enabled is False
