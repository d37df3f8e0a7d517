"""The dashboard shell: sign-in, the Tasks list (filters, pages, htmx fragment), a task, Settings."""

from __future__ import annotations

import pytest

from optio import lifecycle, logs
from optio.models import Repo
from tests.services import require_chromium

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def signed_in(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.mark.parametrize("url", ["/", "/settings/", "/tasks/00000000-0000-0000-0000-000000000001/"])
def test_pages_need_a_signed_in_user(client, db, url):
    resp = client.get(url)
    assert resp.status_code == 302
    assert resp["Location"] == f"/login/?next={url}"


def test_sign_in_and_out(client, admin_user):
    page = client.get("/login/")
    assert page.status_code == 200
    assert b'name="password"' in page.content
    resp = client.post("/login/", {"username": "admin", "password": "correct horse battery", "next": "/settings/"})
    assert resp.status_code == 302 and resp["Location"] == "/settings/"
    assert client.get("/").status_code == 200
    assert client.get("/logout/").status_code == 405  # signing out changes state: POST only
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_wrong_password_shows_a_message_and_keeps_the_user_name(client, admin_user):
    page = client.post("/login/", {"username": "admin", "password": "nope"}).content.decode()
    assert "Wrong username or password" in page
    assert 'value="admin"' in page


@pytest.fixture
def tasks(repo):
    other = Repo.objects.create(url="https://github.com/acme/api-server")
    email = lifecycle.create_task(repo, "Add email validation", "p", ticket_source="github", ticket_external_id="42")
    flaky = lifecycle.create_task(other, "Fix flaky test", "p")
    lifecycle.transition(flaky, "running")
    lifecycle.transition(flaky, "completed", cost_usd="0.35")
    return email, flaky, other


def test_tasks_list_shows_tasks_with_their_state(signed_in, tasks):
    page = signed_in.get("/").content.decode()
    assert "Add email validation" in page and "Fix flaky test" in page
    assert 'class="state state-completed"' in page
    assert "$0.35" in page
    assert "<nav>" in page and "Issues" in page and "Settings" in page


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        ("state=completed", "Fix flaky test", "Add email validation"),
        ("q=email", "Add email validation", "Fix flaky test"),
        ("state=exploded", "Fix flaky test", None),  # an unknown state is ignored, not an error
    ],
)
def test_tasks_list_filters(signed_in, tasks, query, shown, hidden):
    page = signed_in.get(f"/?{query}").content.decode()
    assert shown in page
    if hidden:
        assert hidden not in page


def test_tasks_list_filters_by_repository(signed_in, tasks):
    _, _, other = tasks
    page = signed_in.get(f"/?repo={other.pk}").content.decode()
    assert "Fix flaky test" in page and "Add email validation" not in page


def test_tasks_list_is_paginated(signed_in, repo):
    for i in range(30):
        lifecycle.create_task(repo, f"Task number {i:02d}", "p")
    first = signed_in.get("/").content.decode()
    assert "Task number 29" in first and "Task number 00" not in first
    assert "Page 1 of 2" in first
    second = signed_in.get("/?page=2").content.decode()
    assert "Task number 00" in second and "Task number 29" not in second
    assert signed_in.get("/?page=999").status_code == 200  # out of range shows the last page


def test_htmx_filter_request_renders_only_the_rows(signed_in, tasks):
    resp = signed_in.get("/?state=completed", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="task-rows")
    body = resp.content.decode()
    assert "<html" not in body and "<table" in body
    assert "Fix flaky test" in body and "Add email validation" not in body


def test_empty_tasks_list_says_what_to_do(signed_in, db):
    page = signed_in.get("/").content.decode()
    assert "No tasks yet" in page
    assert "/settings/" in page


def test_task_page_shows_fields_history_and_logs(signed_in, tasks):
    email, flaky, _ = tasks
    logs.append(flaky, [{"content": "All tests pass", "type": "text", "stream": "stdout", "metadata": {}}])
    page = signed_in.get(f"/tasks/{flaky.pk}/").content.decode()
    assert "Fix flaky test" in page
    for name in ("task.created", "task.queued", "task.running", "task.completed"):
        assert name in page
    assert "All tests pass" in page
    assert signed_in.get("/tasks/00000000-0000-0000-0000-000000000001/").status_code == 404


def test_task_page_shows_the_pull_requests_last_known_status(signed_in, repo):
    task = lifecycle.create_task(repo, "Fix login", "p")
    lifecycle.transition(task, "running")
    status = {
        "state": "open", "mergeable": False, "reviewDecision": "changes_requested", "changesRequestedBy": ["alice"],
        "checks": {"state": "failure", "failing": ["lint", "test"], "pending": [], "passing": []},
        "observedAt": "2026-11-30T10:00:00Z",
    }  # fmt: skip
    lifecycle.transition(task, "pr_opened", pr_url=f"{repo.url}/pull/7", pr_status=status)
    page = signed_in.get(f"/tasks/{task.pk}/").content.decode()
    section = page[page.index('id="task-pr-status"') :].split("</dd>")[0]
    assert "failure" in section and "lint, test" in section
    assert "changes_requested by alice" in section
    assert "mergeable: no" in section


def test_task_page_without_a_watched_pr_has_no_status_row(signed_in, tasks):
    _, flaky, _ = tasks
    assert 'id="task-pr-status"' not in signed_in.get(f"/tasks/{flaky.pk}/").content.decode()


def test_settings_links_every_area_and_describes_this_instance(signed_in, repo, settings):
    page = signed_in.get("/settings/").content.decode()
    for link in ("/settings/repos/", "/settings/providers/", "/settings/webhooks/", "/settings/mcp/", "/api/docs"):
        assert f'href="{link}"' in page
    assert "acme/webapp" in page
    assert ("embedded" if settings.EMBEDDED else "production") in page
    assert settings.OPTIO_PUBLIC_URL in page


# --- in a real browser -------------------------------------------------------------------


@pytest.mark.browser
def test_sign_in_tasks_settings_and_api_docs_in_chromium(live_server, admin_user, transactional_db, tmp_path):
    """Nothing the pages need comes from the internet: the API docs render offline too."""
    chromium = require_chromium()
    repo = Repo.objects.create(url="https://github.com/acme/webapp")
    lifecycle.create_task(repo, "Add email validation", "p")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            outside = []
            page.on(
                "request",
                lambda r: outside.append(r.url) if not r.url.startswith((live_server.url, "data:")) else None,
            )
            page.goto(f"{live_server.url}/")
            assert page.url.startswith(f"{live_server.url}/login/")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", "correct horse battery")
            page.click("button[type=submit]")
            page.wait_for_selector("h1:has-text('Tasks')")
            assert page.locator("table.list tbody tr").count() == 1
            assert page.locator(".state-queued").inner_text() == "queued"

            page.select_option("select[name=state]", "completed")  # htmx swaps the rows in place
            page.wait_for_selector("text=No tasks match these filters")

            page.click("nav >> text=Settings")
            page.wait_for_selector("h1:has-text('Settings')")
            assert page.locator("text=acme/webapp").count() >= 1

            page.goto(f"{live_server.url}/api/docs")
            page.wait_for_selector("[data-path='/api/tasks']", timeout=15000)
            page.screenshot(path=str(tmp_path / "docs.png"))
            assert not outside, f"the dashboard fetched from outside Optio: {outside}"
        finally:
            browser.close()
