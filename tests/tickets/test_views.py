"""Settings → Ticket providers: the list with status and actions, the add/edit form per source."""

from __future__ import annotations

import pytest

from optio.models import Task
from tickets.models import TicketProvider

from .conftest import LINEAR_KEY


@pytest.fixture
def browser_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_the_page_needs_a_signed_in_user(client, db):
    resp = client.get("/settings/providers/")
    assert resp.status_code == 302 and resp["Location"].startswith("/login/")
    assert client.post("/settings/providers/1/sync/").status_code == 302


def test_the_list_shows_source_scope_enabled_last_sync_last_error_and_failures(browser_client, linear_provider):
    TicketProvider.objects.filter(pk=linear_provider.pk).update(
        consecutive_failures=3, last_error="Linear rejected the API key (expired)."
    )
    page = browser_client.get("/settings/providers/").content.decode()
    assert "Linear" in page and "→ github.com/acme/webapp" in page
    assert "Linear rejected the API key (expired)." in page
    assert ">3<" in page  # failure count
    assert "never" in page  # last sync
    for action in ("Sync now", "Preview", "Edit", 'aria-pressed="true"'):
        assert action in page
    assert LINEAR_KEY not in page


def test_the_add_form_fields_follow_the_chosen_source(browser_client, db):
    github = browser_client.get("/settings/providers/").content.decode()
    assert 'name="repos"' in github and 'name="assignee"' in github and 'name="apiKey"' not in github
    linear = browser_client.get("/settings/providers/?source=linear", HTTP_HX_REQUEST="true",
                                HTTP_HX_TARGET="provider-form").content.decode()  # fmt: skip
    assert 'name="apiKey"' in linear and 'name="teamId"' in linear and 'name="repos"' not in linear
    assert "<html" not in linear  # htmx gets the form fragment only


def test_adding_a_provider_through_the_form(browser_client, db):
    resp = browser_client.post(
        "/settings/providers/",
        {"source": "github", "repos": "https://github.com/acme/webapp\nhttps://github.com/acme/api",
         "labels": "optio, agent", "assignee": "", "token": "", "enabled": "on"},
    )  # fmt: skip
    assert resp.status_code == 302
    provider = TicketProvider.objects.get()
    assert provider.config == {
        "repos": ["https://github.com/acme/webapp", "https://github.com/acme/api"],
        "labels": ["optio", "agent"],
        "assignee": None,
    }
    page = browser_client.get("/settings/providers/").content.decode()
    assert "Connected https://github.com/acme/webapp, https://github.com/acme/api." in page


def test_a_bad_form_shows_the_error_next_to_the_field(browser_client, db):
    resp = browser_client.post("/settings/providers/", {"source": "github", "repos": "not a url", "assignee": "a b"})
    assert resp.status_code == 200
    assert "expected https://host/owner/name" in resp.content.decode()
    assert not TicketProvider.objects.exists()


def test_editing_keeps_the_stored_key_when_left_empty_and_never_shows_it(browser_client, linear_provider):
    page = browser_client.get(f"/settings/providers/{linear_provider.pk}/").content.decode()
    assert LINEAR_KEY not in page and "stored" in page
    resp = browser_client.post(
        f"/settings/providers/{linear_provider.pk}/",
        {"apiKey": "", "teamId": "", "projectId": "", "labels": "optio", "repoUrl": "https://github.com/acme/webapp",
         "enabled": "on"},
    )  # fmt: skip
    assert resp.status_code == 302
    provider = TicketProvider.objects.get(pk=linear_provider.pk)
    assert provider.config == {"labels": ["optio"], "repoUrl": "https://github.com/acme/webapp"}
    assert provider.get_credentials() == {"apiKey": LINEAR_KEY}


def test_toggle_answers_htmx_with_the_row_and_re_enabling_clears_failures(browser_client, linear_provider):
    url = f"/settings/providers/{linear_provider.pk}/toggle/"
    row = browser_client.post(url, HTTP_HX_REQUEST="true").content.decode()
    assert row.lstrip().startswith("<tr") and "Disabled." in row
    TicketProvider.objects.filter(pk=linear_provider.pk).update(
        consecutive_failures=5, disabled_reason="Disabled after 5"
    )
    row = browser_client.post(url, HTTP_HX_REQUEST="true").content.decode()
    assert "Enabled; failures cleared." in row
    provider = TicketProvider.objects.get(pk=linear_provider.pk)
    assert (provider.enabled, provider.consecutive_failures, provider.disabled_reason) == (True, 0, "")


def test_sync_now_and_preview_buttons(browser_client, linear, team, linear_provider):
    linear.add_issue(team, "Add email validation")
    preview = browser_client.post(f"/settings/providers/{linear_provider.pk}/preview/", HTTP_HX_REQUEST="true")
    assert "Add email validation" in preview.content.decode() and "create a task" in preview.content.decode()
    assert Task.objects.count() == 0
    row = browser_client.post(f"/settings/providers/{linear_provider.pk}/sync/", HTTP_HX_REQUEST="true")
    assert "Sync queued." in row.content.decode()
    assert Task.objects.count() == 1  # eager Celery in tests
    assert "1 created" in row.content.decode()


def test_delete_removes_the_provider(browser_client, linear_provider):
    resp = browser_client.post(f"/settings/providers/{linear_provider.pk}/delete/")
    assert resp.status_code == 302 and not TicketProvider.objects.exists()


def test_the_admin_shows_providers_without_their_credentials(browser_client, linear_provider):
    listing = browser_client.get("/admin/tickets/ticketprovider/")
    change = browser_client.get(f"/admin/tickets/ticketprovider/{linear_provider.pk}/change/")
    assert listing.status_code == change.status_code == 200
    for resp in (listing, change):
        assert LINEAR_KEY not in resp.content.decode()
    assert "credentials_encrypted" not in change.content.decode()
