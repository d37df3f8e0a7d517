"""Settings → MCP servers driven in headless Chromium: add, see the effective configuration, delete."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from django.test import Client

from integrations.mcp.models import MCPServer
from optio.models import Repo
from tests.services import require_chromium

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = pytest.mark.browser


@pytest.fixture
def page(live_server, admin_user, monkeypatch):
    chromium = require_chromium()
    # Playwright's sync API runs an event loop in this thread; the ORM calls around it are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    client = Client()
    client.force_login(admin_user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}])
        pg = context.new_page()
        pg.set_default_timeout(10_000)
        pg.base_url = live_server.url
        yield pg
        browser.close()
        # ORM calls made while Playwright's loop runs get their own connection; close it here, or
        # PostgreSQL refuses to drop the test database at the end of the session.
        connections.close_all()


def _shot(page, name: str) -> None:
    # Kept for a person to look at (OPTIO_SCREENSHOTS=dir); the assertions do not depend on it.
    target = os.environ.get("OPTIO_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)


def test_add_inspect_and_delete_in_the_browser(page, transactional_db):
    repo = Repo.objects.create(url="https://github.com/acme/webapp")
    MCPServer.objects.create(name="Search", command="search-mcp", env={"KEY": "{{SEARCH_KEY}}"})
    MCPServer.objects.create(name="Docs", repo=repo, transport="http", url="https://docs.example/mcp")

    page.goto(page.base_url + "/settings/mcp/")
    page.get_by_role("link", name="Add a global server").click()
    page.fill("input[name=name]", "GitHub Tools")
    page.fill("input[name=command]", "npx")
    page.fill("textarea[name=args]", "-y\n@modelcontextprotocol/server-github")
    page.fill("textarea[name=env]", "GITHUB_TOKEN={{GITHUB_TOKEN}}")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/settings/mcp/")
    assert "GITHUB_TOKEN is not stored globally" in page.locator(".messages").inner_text()
    assert page.locator("#mcp-global tr", has_text="GitHub Tools").count() == 1

    page.locator(f"#mcp-repo-{repo.pk} summary").click()  # htmx loads the effective configuration
    effective = page.locator(f"#effective-{repo.pk}")
    effective.wait_for()
    assert "GITHUB_TOKEN" in effective.locator(".missing-secrets").inner_text()
    assert "SEARCH_KEY" in effective.locator(".missing-secrets").inner_text()
    assert effective.locator("tr[data-status=applies]").count() == 3
    _shot(page, "mcp-settings")

    page.once("dialog", lambda dialog: dialog.accept())
    row = page.locator("#mcp-global tr", has_text="Search")
    row.get_by_role("button", name="Delete").click()
    row.wait_for(state="detached")
    assert list(MCPServer.objects.order_by("name").values_list("name", flat=True)) == ["Docs", "GitHub Tools"]


def test_repository_override_and_form_errors_in_the_browser(page, transactional_db):
    repo = Repo.objects.create(url="https://github.com/acme/webapp")
    MCPServer.objects.create(name="GitHub Tools", command="npx", env={"GITHUB_TOKEN": "{{GITHUB_TOKEN}}"})
    MCPServer.objects.create(name="Search", command="search-mcp")

    page.goto(page.base_url + f"/settings/mcp/new/?repo={repo.pk}")
    assert page.locator("select[name=repo] option:checked").inner_text() == "acme/webapp only"
    page.fill("input[name=name]", "GitHub Tools")
    page.fill("input[name=command]", "docker")
    page.fill("textarea[name=env]", "GITHUB_PERSONAL_ACCESS_TOKEN={{WEBAPP-TOKEN}}")
    page.get_by_role("button", name="Save").click()
    assert "is not a secret reference" in page.locator(".errorlist").inner_text()
    _shot(page, "mcp-form-error")
    page.fill("textarea[name=env]", "GITHUB_PERSONAL_ACCESS_TOKEN={{WEBAPP_TOKEN}}")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/settings/mcp/")

    page.goto(page.base_url + f"/settings/mcp/new/?repo={repo.pk}")
    page.fill("input[name=name]", "Search")
    page.fill("input[name=command]", "unused")
    page.uncheck("input[name=enabled]")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/settings/mcp/")

    page.goto(page.base_url + f"/settings/mcp/repos/{repo.pk}/")
    assert "overrides global" in page.locator("tr[data-status=applies]").inner_text()
    assert page.locator("tr[data-status=overridden]").count() == 2
    assert "turns the global server off here" in page.locator("tr[data-status=disabled]").inner_text()
    assert "WEBAPP_TOKEN" in page.locator(".missing-secrets").inner_text()
    _shot(page, "mcp-effective")
