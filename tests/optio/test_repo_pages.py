"""Settings → Repositories: list, connect, disconnect, and a repository's general settings."""

from __future__ import annotations

import pytest

from optio import lifecycle
from optio.models import Repo


@pytest.fixture
def browser_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_pages_need_a_login(client, repo):
    for path in ("/settings/repos/", f"/settings/repos/{repo.pk}/"):
        resp = client.get(path)
        assert resp.status_code == 302 and resp["Location"].startswith("/login/")


def test_list_shows_connected_repositories(browser_client, repo):
    html = browser_client.get("/settings/repos/").content.decode()
    assert "acme/webapp" in html and f'href="/settings/repos/{repo.pk}/"' in html
    assert 'name="repo_url"' in html


def test_empty_list_says_how_to_connect(browser_client):
    assert "No repositories connected yet" in browser_client.get("/settings/repos/").content.decode()


def test_connect_normalises_the_url(browser_client):
    resp = browser_client.post("/settings/repos/", {"action": "connect", "repo_url": "git@github.com:Acme/API.git"})
    assert resp.status_code == 302
    assert Repo.objects.get().url == "https://github.com/acme/api"
    assert "Connected acme/api" in browser_client.get("/settings/repos/").content.decode()


def test_connect_errors_are_shown_on_the_form(browser_client, repo):
    resp = browser_client.post("/settings/repos/", {"action": "connect", "repo_url": "not a repo"})
    assert resp.status_code == 400
    assert "is not a repository URL" in resp.content.decode()
    resp = browser_client.post("/settings/repos/", {"action": "connect", "repo_url": "https://github.com/ACME/webapp/"})
    assert resp.status_code == 400
    assert "https://github.com/acme/webapp is already connected." in resp.content.decode()
    assert Repo.objects.count() == 1


def test_disconnect(browser_client, repo):
    resp = browser_client.post("/settings/repos/", {"action": "disconnect", "repo": str(repo.pk)}, follow=True)
    assert "Disconnected acme/webapp" in resp.content.decode()
    assert not Repo.objects.exists()


def test_a_repository_with_tasks_cannot_be_disconnected(browser_client, repo):
    lifecycle.create_task(repo, "t", "p")
    resp = browser_client.post("/settings/repos/", {"action": "disconnect", "repo": str(repo.pk)}, follow=True)
    assert "still has tasks" in resp.content.decode()
    assert Repo.objects.exists()


def test_general_settings_save(browser_client, repo):
    resp = browser_client.post(f"/settings/repos/{repo.pk}/", {"section": "general", "default_branch": "develop"})
    assert resp.status_code == 302
    repo.refresh_from_db()
    assert (repo.default_branch, repo.writeback_enabled) == ("develop", False)  # unchecked box: off
    browser_client.post(
        f"/settings/repos/{repo.pk}/", {"section": "general", "default_branch": "main", "writeback_enabled": "on"}
    )
    repo.refresh_from_db()
    assert (repo.default_branch, repo.writeback_enabled) == ("main", True)


def test_general_settings_errors(browser_client, repo):
    resp = browser_client.post(f"/settings/repos/{repo.pk}/", {"section": "general", "default_branch": ""})
    assert resp.status_code == 400 and "may not be blank" in resp.content.decode()
    resp = browser_client.post(f"/settings/repos/{repo.pk}/", {"section": "nope"})
    assert resp.status_code == 400 and "Unknown form section" in resp.content.decode()


def test_unknown_repository_is_404(browser_client, db):
    assert browser_client.get("/settings/repos/999/").status_code == 404
