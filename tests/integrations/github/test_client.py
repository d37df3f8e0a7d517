"""The GitHub REST client against the fake GitHub: pagination, PRs, ETags, rate limits, errors."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from integrations.github import client, etags
from integrations.github.models import CachedResponse
from optio import secrets
from optio.models import Repo


@pytest.fixture
def webapp(repo, gh):
    gh.add_repo("acme/webapp")
    return repo


def test_list_issues_follows_link_pagination_across_pages(webapp, gh, github_token):
    for i in range(250):
        gh.add_issue("acme/webapp", f"Issue {i}")

    listing = client.list_issues(webapp)

    assert len(listing) == 250
    assert listing.pages == 3 and not listing.truncated
    assert sorted(i["number"] for i in listing) == list(range(1, 251))
    paths = [r.path for r in gh.requests_to("/issues")]
    # GitHub's Link headers point at /repositories/{id}/issues; the client follows them as given.
    assert paths[0] == "/repos/acme/webapp/issues"
    assert all(p.startswith("/repositories/") for p in paths[1:])
    assert [r.query.get("page") for r in gh.requests_to("/issues")] == [None, "2", "3"]


def test_page_cap_stops_and_marks_the_listing_truncated(webapp, gh, github_token):
    for i in range(30):
        gh.add_issue("acme/webapp", f"Issue {i}")

    listing = client.list_issues(webapp, per_page=10, max_pages=2)

    assert len(listing) == 20
    assert listing.truncated
    assert len(gh.requests_to("/issues")) == 2


def test_pull_requests_are_left_out_of_issue_lists(webapp, gh, github_token):
    gh.add_issue("acme/webapp", "A real issue")
    gh.add_issue("acme/webapp", "A pull request", pull_request=True)
    gh.add_issue("acme/webapp", "Another issue")

    titles = [i["title"] for i in client.list_issues(webapp)]

    assert sorted(titles) == ["A real issue", "Another issue"]


def test_requests_carry_the_token_and_api_version_headers(webapp, gh, github_token):
    client.list_issues(webapp)

    headers = gh.requests[-1].headers
    assert headers["authorization"] == f"Bearer {github_token}"
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"


def test_filters_become_github_query_parameters(webapp, gh, github_token):
    old = datetime(2024, 1, 1, tzinfo=UTC)
    gh.add_issue("acme/webapp", "Old bug", labels=["bug"], assignee="alice", created_at=old)
    gh.add_issue("acme/webapp", "New bug", labels=["bug", "ui"], assignee="alice")
    gh.add_issue("acme/webapp", "New chore", labels=["chore"], assignee="bob")
    gh.add_issue("acme/webapp", "Closed bug", labels=["bug"], state="closed")

    assert [i["title"] for i in client.list_issues(webapp, labels=["bug"], assignee="alice")] == ["New bug", "Old bug"]
    assert [i["title"] for i in client.list_issues(webapp, labels="bug,ui")] == ["New bug"]
    assert [i["title"] for i in client.list_issues(webapp, assignee="none", state="all")] == ["Closed bug"]
    recent = client.list_issues(webapp, since=datetime.now(UTC) - timedelta(days=1))
    assert {i["title"] for i in recent} == {"New bug", "New chore"}
    sent = gh.requests[-1].query
    assert sent["since"].endswith("Z") and sent["state"] == "open" and sent["per_page"] == "100"


def test_etag_revalidation_sends_if_none_match_and_uses_the_cached_body_on_304(webapp, gh, github_token):
    gh.add_issue("acme/webapp", "Fix login", body="It breaks")
    first = client.list_issues(webapp)
    remaining_after_first = gh.remaining[github_token]

    second = client.list_issues(webapp)

    request = gh.requests[-1]
    assert request.headers["if-none-match"].startswith('W/"')
    assert request.status == 304
    assert second.not_modified and not first.not_modified
    assert [i["title"] for i in second] == ["Fix login"]
    assert second[0]["body"] == "It breaks"
    assert gh.remaining[github_token] == remaining_after_first  # a 304 costs no rate limit


def test_a_changed_issue_is_fetched_again_despite_the_etag(webapp, gh, github_token):
    gh.add_issue("acme/webapp", "Fix login")
    client.list_issues(webapp)
    gh.touch("acme/webapp", 1, title="Fix login on Safari")

    listing = client.list_issues(webapp)

    assert gh.requests[-1].status == 200
    assert [i["title"] for i in listing] == ["Fix login on Safari"]
    assert [i["title"] for i in client.list_issues(webapp)] == ["Fix login on Safari"]  # and cached anew


def test_cached_body_is_read_from_the_database_by_a_fresh_process(webapp, gh, github_token):
    gh.add_issue("acme/webapp", "Fix login")
    client.list_issues(webapp)
    etags.memo.clear()  # what a restarted process would have

    listing = client.list_issues(webapp)

    assert gh.requests[-1].status == 304
    assert [i["title"] for i in listing] == ["Fix login"]
    assert CachedResponse.objects.count() == 1
    row = CachedResponse.objects.get()
    assert github_token not in row.url + row.key + row.scope  # the token itself is never stored


def test_preloaded_store_serves_304s_without_the_database_and_flushes_once(webapp, gh, github_token):
    for i in range(150):
        gh.add_issue("acme/webapp", f"Issue {i}")
    params = {"state": "open", "per_page": client.PER_PAGE}
    scope = client.listing_scope(github_token, "/repos/acme/webapp/issues", params)
    store = etags.PreloadedStore([scope])
    client.list_issues(webapp, token=github_token, store=store)
    assert CachedResponse.objects.count() == 0  # nothing written until flush
    store.flush()
    assert CachedResponse.objects.filter(scope=scope).count() == 2

    warm = client.list_issues(webapp, token=github_token, store=etags.PreloadedStore([scope]))

    assert warm.not_modified and len(warm) == 150
    assert [r.status for r in gh.requests[-2:]] == [304, 304]


def test_exhausted_rate_limit_is_a_clear_error_with_the_reset_time(webapp, gh, github_token):
    gh.rate_limit_exhausted()

    with pytest.raises(client.RateLimited) as caught:
        client.list_issues(webapp)

    error = caught.value
    assert not error.secondary and error.status == 403
    assert error.reset_at == datetime.fromtimestamp(gh.reset_at, tz=UTC)
    assert "rate limit" in str(error) and "resets at" in str(error) and "acme/webapp" in str(error)


def test_fake_refuses_when_the_quota_is_really_used_up(webapp, gh, github_token):
    gh.add_issue("acme/webapp", "Fix login")
    gh.remaining[github_token] = 1
    client.get_issue(webapp, 1)

    with pytest.raises(client.RateLimited):
        client.list_issues(webapp)


def test_secondary_rate_limit_reports_retry_after(webapp, gh, github_token):
    gh.secondary_rate_limit(retry_after=30)

    with pytest.raises(client.RateLimited) as caught:
        client.list_issues(webapp)

    assert caught.value.secondary and caught.value.retry_after == 30
    assert "secondary rate limit" in str(caught.value) and "30 s" in str(caught.value)


def test_secondary_rate_limit_without_retry_after_waits_a_minute(webapp, gh, github_token):
    gh.fail(403, message="You have exceeded a secondary rate limit. Please wait a few minutes before you try again.")

    with pytest.raises(client.RateLimited) as caught:
        client.list_issues(webapp)

    assert caught.value.secondary and caught.value.retry_after == 60


def test_a_403_that_is_not_a_rate_limit_is_a_permission_error(webapp, gh, github_token):
    gh.fail(403, message="Resource not accessible by personal access token")

    with pytest.raises(client.Forbidden, match="permission"):
        client.list_issues(webapp)


def test_bad_token_is_a_clear_bad_credentials_error(webapp, gh, db):
    secrets.set_secret("GITHUB_TOKEN", "ghp_revoked")

    with pytest.raises(client.BadCredentials) as caught:
        client.list_issues(webapp)

    message = str(caught.value)
    assert "GITHUB_TOKEN" in message and "401" in message and "ghp_revoked" not in message


def test_missing_token_names_the_secret_and_where_to_set_it(webapp, gh, db):
    with pytest.raises(client.MissingToken) as caught:
        client.list_issues(webapp)

    assert "GITHUB_TOKEN" in str(caught.value) and "/api/secrets" in str(caught.value)
    assert gh.requests == []


def test_repository_token_is_used_before_the_global_one(webapp, gh, db):
    other = Repo.objects.create(url="https://github.com/acme/other")
    gh.tokens.add("ghp_repo_scoped")
    secrets.set_secret("GITHUB_TOKEN", gh.token)
    secrets.set_secret("GITHUB_TOKEN", "ghp_repo_scoped", repo=webapp)

    client.list_issues(webapp)
    assert gh.requests[-1].headers["authorization"] == "Bearer ghp_repo_scoped"
    gh.add_repo("acme/other")
    client.list_issues(other)
    assert gh.requests[-1].headers["authorization"] == f"Bearer {gh.token}"


def test_server_error_and_unreachable_github_are_unavailable(webapp, gh, github_token, settings):
    gh.fail(500)
    with pytest.raises(client.Unavailable, match="HTTP 500"):
        client.list_issues(webapp)

    settings.GITHUB_API_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    with pytest.raises(client.Unavailable, match="Could not reach GitHub"):
        client.list_issues(webapp)


def test_unknown_repository_is_not_found(db, gh, github_token):
    missing = Repo.objects.create(url="https://github.com/acme/missing")

    with pytest.raises(client.NotFound, match="acme/missing"):
        client.list_issues(missing)


def test_issue_comments_and_write_calls(webapp, gh, github_token):
    gh.add_issue("acme/webapp", "Fix login", body="Steps: ...")
    for i in range(3):
        gh.add_comment("acme/webapp", 1, f"comment {i}", user="alice")

    assert client.get_issue(webapp, 1)["title"] == "Fix login"
    comments = client.list_issue_comments(webapp, 1)
    assert [c["body"] for c in comments] == ["comment 0", "comment 1", "comment 2"]

    labels = client.add_labels(webapp, 1, ["optio"])
    assert [label["name"] for label in labels] == ["optio"]
    created = client.create_comment(webapp, 1, "Optio is on it")
    assert created["body"] == "Optio is on it"
    closed = client.update_issue(webapp, 1, state="closed", state_reason="not_planned")
    assert closed["state"] == "closed" and closed["state_reason"] == "not_planned"
    assert gh.issue("acme/webapp", 1).state == "closed"
    post = gh.requests_to("/labels", method="POST")[0]
    assert post.headers["content-type"] == "application/json"


def test_invalid_write_is_unprocessable(webapp, gh, github_token):
    gh.add_issue("acme/webapp", "Fix login")

    with pytest.raises(client.Unprocessable, match="422"):
        client.update_issue(webapp, 1, state="merged")


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_rows_are_written_behind_and_pending_pages_still_revalidate(gh, monkeypatch):
    secrets.set_secret("GITHUB_TOKEN", gh.token)
    webapp = Repo.objects.create(url="https://github.com/acme/webapp")
    gh.add_issue("acme/webapp", "Fix login")
    scope = client.listing_scope(gh.token, "/repos/acme/webapp/issues", {"state": "open", "per_page": client.PER_PAGE})
    release = threading.Event()
    real_write = etags._write
    monkeypatch.setattr(etags, "_write", lambda *args: (release.wait(10), real_write(*args)))

    store = etags.PreloadedStore([scope])
    client.list_issues(webapp, token=gh.token, store=store)
    store.flush()  # returns at once: the writer thread waits for `release`
    assert CachedResponse.objects.count() == 0

    warm = client.list_issues(webapp, token=gh.token, store=etags.PreloadedStore([scope]))
    assert warm.not_modified and gh.requests[-1].status == 304  # the pending page's ETag was used

    release.set()
    etags.writer.drain()
    assert list(CachedResponse.objects.values_list("scope", flat=True)) == [scope]


@pytest.mark.django_db(transaction=True)
def test_rows_written_behind_wait_a_moment_and_are_written_together_without_a_drain(gh, monkeypatch):
    secrets.set_secret("GITHUB_TOKEN", gh.token)
    webapp = Repo.objects.create(url="https://github.com/acme/webapp")
    api_repo = Repo.objects.create(url="https://github.com/acme/api")
    for name in ("acme/webapp", "acme/api"):
        gh.add_issue(name, "An issue")
    writes = []
    real_write = etags._write
    monkeypatch.setattr(etags, "_write", lambda dirty, touched: (writes.append(len(dirty)), real_write(dirty, touched)))
    scopes = [
        client.listing_scope(gh.token, f"/repos/{name}/issues", {"state": "open", "per_page": client.PER_PAGE})
        for name in ("acme/webapp", "acme/api")
    ]

    for repo, scope in zip((webapp, api_repo), scopes, strict=True):
        store = etags.PreloadedStore([scope])
        client.list_issues(repo, token=gh.token, store=store)
        store.flush()
    assert CachedResponse.objects.count() == 0 and writes == []  # queued, not written yet

    deadline = time.monotonic() + 10
    while CachedResponse.objects.count() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert CachedResponse.objects.count() == 2
    assert writes == [2]  # both requests' pages in one write
