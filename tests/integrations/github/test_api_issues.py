"""GET /api/issues: open issues across every connected repository."""

from __future__ import annotations

import pytest

from integrations.github import client, issues
from optio import lifecycle
from optio.models import Repo


def _titles(body: dict) -> list[str]:
    return [i["title"] for i in body["results"]]


def test_lists_open_issues_of_every_connected_repository_without_prs(api, two_repos, github_token):
    resp = api.get("/api/issues")

    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["count"] == 3 and body["errors"] == []
    assert sorted(_titles(body)) == ["Add dark mode", "Login fails on Safari", "Rate limit the login endpoint"]
    item = next(i for i in body["results"] if i["title"] == "Login fails on Safari")
    webapp = two_repos[0]
    assert item == {
        "id": item["id"],
        "number": 1,
        "title": "Login fails on Safari",
        "body": "Steps to reproduce",
        "url": "https://github.com/acme/webapp/issues/1",
        "labels": ["bug", "ui"],
        "state": "open",
        "author": "octocat",
        "assignee": "alice",
        "assignees": ["alice"],
        "comments": 0,
        "repo": {"id": webapp.pk, "fullName": "acme/webapp", "repoUrl": "https://github.com/acme/webapp"},
        "createdAt": item["createdAt"],
        "updatedAt": item["updatedAt"],
        "optioTask": None,
    }
    assert item["createdAt"].endswith("Z")


def test_repositories_are_fetched_concurrently_and_bounded(api, gh, github_token):
    gh.latency = 0.1
    for i in range(issues.MAX_CONCURRENCY + 5):
        Repo.objects.create(url=f"https://github.com/acme/r{i}")
        gh.add_issue(f"acme/r{i}", f"Issue of r{i}")

    body = api.get("/api/issues?pageSize=100").json()

    assert body["count"] == issues.MAX_CONCURRENCY + 5
    assert 1 < gh.max_in_flight <= issues.MAX_CONCURRENCY


@pytest.mark.parametrize(
    "query, expected",
    [
        ("repo=https://github.com/acme/api", ["Rate limit the login endpoint"]),
        ("repo=git@github.com:Acme/API.git", ["Rate limit the login endpoint"]),
        ("labels=bug", ["Login fails on Safari", "Rate limit the login endpoint"]),
        ("labels=bug,ui", ["Login fails on Safari"]),
        ("labels=bug&labels=ui", ["Login fails on Safari"]),
        ("assignee=bob", ["Rate limit the login endpoint"]),
        ("assignee=none", ["Add dark mode"]),
        ("assignee=*", ["Login fails on Safari", "Rate limit the login endpoint"]),
        ("q=LOGIN", ["Login fails on Safari", "Rate limit the login endpoint"]),
        ("state=closed", ["Old closed one"]),
        ("state=all&q=old", ["Old closed one"]),
    ],
)
def test_filters(api, two_repos, github_token, query, expected):
    resp = api.get(f"/api/issues?{query}")

    assert resp.status_code == 200, resp.content
    assert sorted(_titles(resp.json())) == expected


def test_repo_filter_by_id_asks_github_about_that_repository_only(api, two_repos, gh, github_token):
    webapp = two_repos[0]

    body = api.get(f"/api/issues?repo={webapp.pk}").json()

    assert sorted(_titles(body)) == ["Add dark mode", "Login fails on Safari"]
    assert [r.path for r in gh.requests] == ["/repos/acme/webapp/issues"]


def test_paginated_like_every_list(api, gh, repo, github_token):
    for i in range(7):
        gh.add_issue("acme/webapp", f"Issue {i}")

    first = api.get("/api/issues?pageSize=3").json()
    last = api.get("/api/issues?pageSize=3&page=3").json()

    assert first["count"] == 7 and len(first["results"]) == 3
    assert first["previous"] is None and "page=2" in first["next"]
    assert _titles(last) == ["Issue 0"] and last["next"] is None
    assert api.get("/api/issues?pageSize=3&page=9").status_code == 404


def test_one_failing_repository_does_not_hide_the_others(api, two_repos, gh, github_token):
    gh.fail(500, path="/repos/acme/api/", times=None)

    resp = api.get("/api/issues")

    assert resp.status_code == 200
    body = resp.json()
    assert sorted(_titles(body)) == ["Add dark mode", "Login fails on Safari"]
    [error] = body["errors"]
    assert error["repo"]["fullName"] == "acme/api" and error["kind"] == "unavailable"
    assert "HTTP 500" in error["reason"]


def test_rate_limited_and_bad_token_repositories_are_reported(api, two_repos, gh, github_token, db):
    from optio import secrets

    gh.rate_limit_exhausted(path="/repos/acme/api/")
    secrets.set_secret("GITHUB_TOKEN", "ghp_wrong", repo=two_repos[0])

    body = api.get("/api/issues").json()

    kinds = {e["repo"]["fullName"]: e["kind"] for e in body["errors"]}
    assert kinds == {"acme/api": "rate_limited", "acme/webapp": "bad_credentials"}
    assert body["results"] == []
    assert all("ghp_wrong" not in e["reason"] for e in body["errors"])


def test_missing_token_is_a_4xx_naming_the_secret_and_where_to_set_it(api, two_repos, gh):
    resp = api.get("/api/issues")

    assert resp.status_code == 400
    body = resp.json()
    assert "GITHUB_TOKEN" in body["error"] and "POST /api/secrets" in body["error"]
    assert body["details"]["secret"] == "GITHUB_TOKEN"
    assert gh.requests == []


def test_a_repository_without_its_own_or_a_global_token_is_an_error_entry(api, two_repos, gh, db):
    from optio import secrets

    secrets.set_secret("GITHUB_TOKEN", gh.token, repo=two_repos[0])

    body = api.get("/api/issues").json()

    assert sorted(_titles(body)) == ["Add dark mode", "Login fails on Safari"]
    assert [(e["repo"]["fullName"], e["kind"]) for e in body["errors"]] == [("acme/api", "missing_token")]


def test_no_connected_repositories_is_an_empty_list(api, gh, github_token):
    body = api.get("/api/issues").json()

    assert body == {"count": 0, "next": None, "previous": None, "results": [], "errors": []}


def test_optio_task_shows_the_linked_tasks_state(api, two_repos, github_token):
    webapp = two_repos[0]
    done = lifecycle.create_task(webapp, "earlier", "p", ticket_source="github", ticket_external_id="2")
    lifecycle.cancel(done)
    task = lifecycle.create_task(webapp, "Login", "p", ticket_source="github", ticket_external_id="1")
    lifecycle.create_task(two_repos[1], "other repo, same number", "p", ticket_source="linear", ticket_external_id="1")

    by_title = {i["title"]: i["optioTask"] for i in api.get("/api/issues").json()["results"]}

    assert by_title["Login fails on Safari"] == {"taskId": str(task.pk), "state": "queued"}
    assert by_title["Add dark mode"] == {"taskId": str(done.pk), "state": "cancelled"}
    assert by_title["Rate limit the login endpoint"] is None


def test_second_request_is_answered_by_304s(api, two_repos, gh, github_token):
    first = api.get("/api/issues").json()
    gh.clear_log()

    second = api.get("/api/issues").json()

    assert [r.status for r in gh.requests] == [304, 304]
    assert all("if-none-match" in r.headers for r in gh.requests)
    assert second["results"] == first["results"]


@pytest.mark.parametrize(
    "query, message",
    [("repo=https://github.com/nobody/here", "No connected repository"), ("state=merged", "not an issue state")],
)
def test_bad_parameters_are_400(api, two_repos, github_token, query, message):
    resp = api.get(f"/api/issues?{query}")

    assert resp.status_code == 400
    assert message in resp.json()["error"]


def test_needs_an_api_token(client, db):
    assert client.get("/api/issues").status_code == 401
    assert client.post("/api/issues/assign", {}, content_type="application/json").status_code == 401


def test_a_repository_slower_than_the_deadline_is_reported_and_the_rest_return(
    api, two_repos, gh, github_token, monkeypatch
):
    monkeypatch.setattr(issues, "FETCH_DEADLINE", 0.3)
    gh.delay("/repos/acme/api/", 1.0)

    body = api.get("/api/issues").json()

    assert sorted(_titles(body)) == ["Add dark mode", "Login fails on Safari"]
    assert [(e["repo"]["fullName"], e["kind"]) for e in body["errors"]] == [("acme/api", "timeout")]
    assert "within 0.3 s" in body["errors"][0]["reason"]


def test_an_issue_github_shapes_unexpectedly_is_that_repositorys_error_not_a_500(api, two_repos, gh, github_token):
    real = gh._issue_json
    gh._issue_json = lambda repo, issue: {"id": 1} if repo.full_name == "acme/api" else real(repo, issue)

    resp = api.get("/api/issues")

    assert resp.status_code == 200
    body = resp.json()
    assert sorted(_titles(body)) == ["Add dark mode", "Login fails on Safari"]
    [error] = body["errors"]
    assert error["repo"]["fullName"] == "acme/api" and error["kind"] == "unavailable"
    assert "cannot read" in error["reason"] and "number" in error["reason"]  # names the missing field


def test_labels_sent_as_plain_strings_are_read_too(api, two_repos, gh, github_token):
    # GitHub documents an issue's labels as objects or strings.
    real = gh._issue_json
    gh._issue_json = lambda repo, issue: {**real(repo, issue), "labels": [label["name"] for label in real(repo, issue)["labels"]]}  # fmt: skip

    body = api.get("/api/issues?labels=ui").json()

    assert _titles(body) == ["Login fails on Safari"] and body["results"][0]["labels"] == ["bug", "ui"]


def test_a_warm_listing_reads_etags_from_memory_and_a_fresh_process_from_the_database(
    api, two_repos, gh, github_token, django_assert_max_num_queries
):
    from integrations.github import etags

    assert api.get("/api/issues").json()["count"] == 3
    repos = list(Repo.objects.all())
    scopes = [
        client.listing_scope(github_token, f"/repos/{r.full_name}/issues", {"state": "open", "per_page": 100})
        for r in repos
    ]
    with django_assert_max_num_queries(0):
        etags.PreloadedStore(scopes, issues.ROWS)
    with django_assert_max_num_queries(2):  # a fresh process: ETags, then the bodies to parse
        etags.memo.clear()
        store = etags.PreloadedStore(scopes, issues.ROWS)
    assert all(page.body for page in store._pages.values())

    issues.summaries.clear()
    body = api.get("/api/issues").json()
    assert body["count"] == 3 and [r.status for r in gh.requests[-2:]] == [304, 304]


def test_the_plain_json_and_the_issues_view_shapes_of_one_url_are_memoised_apart(two_repos, gh, github_token):
    webapp = two_repos[0]
    issues.fetch([webapp], issues.Filters())  # memoises IssueRow objects for the listing URL

    listing = client.list_issues(webapp, state="open", per_page=100)  # same URL, plain JSON asked for

    assert gh.requests[-1].status == 304
    assert sorted(item["title"] for item in listing) == ["Add dark mode", "Login fails on Safari"]
