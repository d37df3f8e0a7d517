"""The Issues page: filters, htmx assignment in place, Assign all, banner, empty states."""

from __future__ import annotations

import pytest

from optio.models import Task


@pytest.fixture
def browser_client(client, admin_user):
    client.force_login(admin_user)
    return client


def _rows(html: str) -> int:
    return html.count('<tr id="issue-')


def test_empty_state_tells_a_new_user_to_connect_a_repository_and_add_the_secret(browser_client, gh):
    html = browser_client.get("/issues/").content.decode()

    assert "No repositories are connected yet" in html
    assert "/settings/repos/" in html and "GITHUB_TOKEN" in html and "/api/secrets" in html


def test_missing_token_state(browser_client, two_repos):
    html = browser_client.get("/issues/").content.decode()

    assert "needs a <code>GITHUB_TOKEN</code> secret" in html
    assert "Assign to Optio" not in html


def test_lists_issues_with_filters(browser_client, two_repos, github_token):
    webapp = two_repos[0]
    everything = browser_client.get("/issues/").content.decode()
    assert _rows(everything) == 3 and "Bump Django" not in everything  # the PR is not an issue
    assert everything.count("Assign to Optio") == 3

    assert _rows(browser_client.get(f"/issues/?repo={webapp.pk}").content.decode()) == 2
    assert _rows(browser_client.get("/issues/?label=feature").content.decode()) == 1
    assert _rows(browser_client.get("/issues/?assignee=bob").content.decode()) == 1
    assert _rows(browser_client.get("/issues/?q=safari").content.decode()) == 1
    none = browser_client.get("/issues/?q=nothing-like-this").content.decode()
    assert "No open issues match these filters" in none


def test_htmx_filter_renders_only_the_results(browser_client, two_repos, github_token):
    resp = browser_client.get("/issues/?label=bug", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="issue-results")

    html = resp.content.decode()
    assert "<h1>" not in html and _rows(html) == 2


def test_pagination(browser_client, gh, repo, github_token):
    for i in range(30):
        gh.add_issue("acme/webapp", f"Issue {i}")

    first = browser_client.get("/issues/?q=issue").content.decode()
    second = browser_client.get("/issues/?q=issue&page=2").content.decode()

    assert _rows(first) == 25 and _rows(second) == 5
    assert "Page 1 of 2" in first and "?page=2&q=issue" in first


def test_banner_names_the_repository_that_failed(browser_client, two_repos, gh, github_token):
    gh.fail(500, path="/repos/acme/api/", times=None)

    html = browser_client.get("/issues/").content.decode()

    assert 'id="issue-errors"' in html and "acme/api" in html and "HTTP 500" in html
    assert _rows(html) == 2


def test_htmx_assign_answers_with_the_rows_cell_showing_the_task(browser_client, two_repos, github_token):
    webapp = two_repos[0]

    resp = browser_client.post("/issues/assign/", {"repo": webapp.pk, "number": 1}, HTTP_HX_REQUEST="true")

    html = resp.content.decode()
    task = Task.objects.get()
    assert resp.status_code == 200 and html.startswith('<td class="action">')
    assert f"/tasks/{task.pk}/" in html and "queued" in html and "Assign to Optio" not in html
    page = browser_client.get("/issues/").content.decode()
    assert page.count("Assign to Optio") == 2


def test_htmx_assign_failure_shows_the_reason_in_the_cell(browser_client, two_repos, gh, github_token):
    gh.fail(500, times=None)

    resp = browser_client.post("/issues/assign/", {"repo": two_repos[0].pk, "number": 1}, HTTP_HX_REQUEST="true")

    html = resp.content.decode()
    assert resp.status_code == 200 and 'role="alert"' in html and "HTTP 500" in html and "Assign to Optio" in html
    assert Task.objects.count() == 0


def test_assign_without_javascript_redirects_back(browser_client, two_repos, github_token):
    resp = browser_client.post("/issues/assign/", {"repo": two_repos[0].pk, "number": 1, "next": "/issues/?q=login"})

    assert resp.status_code == 302 and resp["Location"] == "/issues/?q=login"
    assert Task.objects.count() == 1
    evil = browser_client.post("/issues/assign/", {"repo": two_repos[0].pk, "number": 1, "next": "https://evil.test/"})
    assert evil["Location"] == "/issues/"


def test_assign_all_assigns_the_filtered_set_once(browser_client, two_repos, github_token):
    resp = browser_client.post("/issues/assign-all/", {"label": "bug", "next": "/issues/?label=bug"}, follow=True)

    assert {t.title for t in Task.objects.all()} == {"Login fails on Safari", "Rate limit the login endpoint"}
    assert "Assigned 2 issues" in resp.content.decode()
    again = browser_client.post("/issues/assign-all/", {"label": "bug"}, follow=True)
    assert Task.objects.count() == 2
    assert "Assigned 0 issues" in again.content.decode()


def test_pages_need_a_login(client, db):
    assert client.get("/issues/")["Location"].startswith("/login/")
    assert client.post("/issues/assign/")["Location"].startswith("/login/")
    assert client.post("/issues/assign-all/")["Location"].startswith("/login/")
