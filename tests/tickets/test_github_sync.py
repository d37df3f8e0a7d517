"""GitHub issues synced into tasks: filters, PRs, paging, ETags and 304s, failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from optio import lifecycle
from optio.models import Repo, Task
from tickets import sync
from tickets.models import TicketProvider

WEBAPP = "acme/webapp"
T0 = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)


def add_issues(gh, count: int, *, repo: str = WEBAPP, labels=("optio",), start: datetime = T0, step=1):
    """`count` issues with distinct update times, as a real repository has."""
    return [
        gh.add_issue(
            repo, f"Issue {n}", f"Body {n}", labels=list(labels), updated_at=start + timedelta(seconds=n * step)
        )
        for n in range(count)
    ]


def numbers(repo: Repo | None = None) -> list[int]:
    qs = Task.objects.filter(ticket_source="github")
    if repo is not None:
        qs = qs.filter(repo=repo)
    return sorted(int(n) for n in qs.values_list("ticket_external_id", flat=True))


def test_a_matching_issue_becomes_one_queued_task(gh, webapp, make_provider):
    issue = gh.add_issue(WEBAPP, "Add email validation", "The signup form accepts anything.", labels=["optio"])
    gh.add_comment(WEBAPP, issue.number, "Please add a test too.", user="hubot")
    provider = make_provider("github", repos=[webapp.url], labels=["optio"])
    assert sync.sync_provider(provider.pk).status == "ok"
    task = Task.objects.get()
    assert (task.title, task.state, task.repo) == ("Add email validation", "queued", webapp)
    assert (task.ticket_source, task.ticket_external_id) == ("github", str(issue.number))
    assert task.ticket_url == f"https://github.com/{WEBAPP}/issues/{issue.number}"
    assert "The signup form accepts anything." in task.prompt
    assert "Please add a test too." in task.prompt and "hubot" in task.prompt


def test_labels_match_any_of_them(gh, webapp, make_provider):
    gh.add_issue(WEBAPP, "optio", labels=["optio"])
    gh.add_issue(WEBAPP, "agent", labels=["Agent", "bug"])
    gh.add_issue(WEBAPP, "neither", labels=["bug"])
    gh.add_issue(WEBAPP, "none")
    provider = make_provider("github", repos=[webapp.url], labels=["optio", "agent"])
    sync.sync_provider(provider.pk)
    assert sorted(Task.objects.values_list("title", flat=True)) == ["agent", "optio"]
    # GitHub's labels= means all of them, so with two labels none is sent and they are checked here.
    assert all("labels" not in r.query for r in gh.requests_to("/issues"))


def test_one_label_is_filtered_by_github(gh, webapp, make_provider):
    gh.add_issue(WEBAPP, "optio", labels=["optio"])
    gh.add_issue(WEBAPP, "other", labels=["bug"])
    provider = make_provider("github", repos=[webapp.url], labels=["optio"])
    sync.sync_provider(provider.pk)
    assert list(Task.objects.values_list("title", flat=True)) == ["optio"]
    assert {r.query.get("labels") for r in gh.requests_to("/issues")} == {"optio"}


def test_no_labels_means_every_open_issue(gh, webapp, make_provider):
    gh.add_issue(WEBAPP, "a", labels=["x"])
    gh.add_issue(WEBAPP, "b")
    provider = make_provider("github", repos=[webapp.url])
    sync.sync_provider(provider.pk)
    assert Task.objects.count() == 2


def test_assignee_filter_login_none_and_any(gh, webapp, make_provider):
    gh.add_issue(WEBAPP, "mona's", assignee="mona")
    gh.add_issue(WEBAPP, "hubot's", assignee="hubot")
    gh.add_issue(WEBAPP, "nobody's")
    expected = {"mona": ["mona's"], "none": ["nobody's"], "*": ["hubot's", "mona's"]}
    for assignee, titles in expected.items():
        Task.objects.all().delete()
        provider = make_provider("github", repos=[webapp.url], assignee=assignee)
        sync.sync_provider(provider.pk)
        assert sorted(Task.objects.values_list("title", flat=True)) == titles, assignee
        assert gh.requests_to("/issues")[-1].query["assignee"] == assignee


def test_pull_requests_and_closed_issues_are_not_tickets(gh, webapp, make_provider):
    gh.add_issue(WEBAPP, "An issue")
    gh.add_issue(WEBAPP, "A pull request", pull_request=True)
    gh.add_issue(WEBAPP, "Closed", state="closed")
    provider = make_provider("github", repos=[webapp.url])
    sync.sync_provider(provider.pk)
    assert list(Task.objects.values_list("title", flat=True)) == ["An issue"]


def test_a_second_sync_with_nothing_changed_creates_nothing_and_is_answered_by_304s(gh, make_provider):
    repos = [Repo.objects.create(url=f"https://github.com/acme/r{i}") for i in range(3)]
    for repo in repos:
        add_issues(gh, 150, repo=repo.full_name)
    provider = make_provider("github", repos=[r.url for r in repos], labels=["optio"])
    first = sync.sync_provider(provider.pk)
    assert first.stats.created == 450

    gh.clear_log()
    second = sync.sync_provider(provider.pk)
    assert (second.status, second.stats.created) == ("ok", 0)
    sent = gh.requests_to("/issues")
    assert len(sent) == len(repos)  # one conditional request per repository
    assert all(r.status == 304 and r.headers.get("if-none-match") for r in sent)
    assert second.stats.notModified == len(repos)
    assert Task.objects.count() == 450


def test_an_updated_issue_is_read_from_since_and_a_new_one_becomes_a_task(gh, webapp, make_provider):
    issues = add_issues(gh, 5)
    provider = make_provider("github", repos=[webapp.url], labels=["optio"])
    sync.sync_provider(provider.pk)
    provider.refresh_from_db()
    since = provider.cursor["repos"][webapp.url]["since"]
    assert since == "2025-01-15T10:00:04Z"

    gh.touch(WEBAPP, issues[0].number, title="Edited")
    gh.add_issue(WEBAPP, "Brand new", labels=["optio"])
    gh.clear_log()
    result = sync.sync_provider(provider.pk)
    assert result.stats.created == 1
    assert gh.requests_to("/issues")[0].query["since"] == since
    assert Task.objects.get(title="Brand new")
    assert not Task.objects.filter(title="Edited").exists()  # an existing ticket is not re-created


def test_many_issues_updated_in_the_same_second_are_all_synced(gh, webapp, make_provider):
    add_issues(gh, 230, step=0)  # one timestamp for all: `since` cannot move, page numbers must
    provider = make_provider("github", repos=[webapp.url])
    result = sync.sync_provider(provider.pk)
    assert (result.status, result.stats.created) == ("ok", 230)
    assert numbers(webapp) == list(range(1, 231))


def test_a_500_on_page_3_records_the_error_and_the_next_sync_completes_without_duplicates(gh, webapp, make_provider):
    add_issues(gh, 350)
    provider = make_provider("github", repos=[webapp.url], labels=["optio"])
    gh.fail(500, path="/issues", after=2)
    result = sync.sync_provider(provider.pk)
    provider.refresh_from_db()
    assert result.status == "failed"
    assert provider.last_error_kind == "unavailable" and "HTTP 500" in provider.last_error
    assert provider.consecutive_failures == 1
    assert 0 < Task.objects.count() < 350  # the pages before the failure are stored

    result = sync.sync_provider(provider.pk)
    assert result.status == "ok"
    assert numbers(webapp) == list(range(1, 351))  # every issue once, none twice
    provider.refresh_from_db()
    assert (provider.consecutive_failures, provider.last_error, provider.last_error_at) == (0, "", None)


def test_a_401_is_bad_credentials_and_the_fifth_failure_in_a_row_disables(gh, webapp, make_provider):
    add_issues(gh, 3)
    provider = make_provider("github", repos=[webapp.url], token="ghp_revoked")
    for attempt in range(1, 6):
        assert sync.sync_provider(provider.pk).status == "failed"
        provider.refresh_from_db()
        assert provider.consecutive_failures == attempt
        assert provider.last_error_kind == "bad_credentials"
        assert "401" in provider.last_error and "ghp_revoked" not in provider.last_error
        assert provider.enabled is (attempt < 5)
    assert "Disabled after 5 failed syncs in a row" in provider.disabled_reason
    assert "401" in provider.disabled_reason
    assert sync.sync_provider(provider.pk).status == "locked"  # a disabled provider is not synced
    assert provider.pk not in sync.due_provider_ids()
    assert Task.objects.count() == 0


def test_a_missing_github_token_names_the_secret(fake_github, webapp, make_provider):
    add_issues(fake_github, 1)
    provider = make_provider("github", repos=[webapp.url])
    sync.sync_provider(provider.pk)
    provider.refresh_from_db()
    assert provider.last_error_kind == "config" and "GITHUB_TOKEN" in provider.last_error


def test_a_per_provider_token_is_used_instead_of_the_secret(fake_github, webapp, make_provider):
    add_issues(fake_github, 2)
    provider = make_provider("github", repos=[webapp.url], token=fake_github.token)  # no GITHUB_TOKEN secret
    assert sync.sync_provider(provider.pk).stats.created == 2


def test_one_failing_repository_does_not_stop_the_others(gh, webapp, make_provider):
    gone = Repo.objects.create(url="https://github.com/acme/gone")  # not on GitHub: 404
    add_issues(gh, 2)
    provider = make_provider("github", repos=[gone.url, webapp.url])
    result = sync.sync_provider(provider.pk)
    provider.refresh_from_db()
    assert result.status == "failed" and provider.last_error_kind == "not_found"
    assert "acme/gone" in provider.last_error
    assert numbers(webapp) == [1, 2]


def test_a_ticket_whose_task_ended_is_not_synced_again(gh, webapp, make_provider):
    issue = gh.add_issue(WEBAPP, "Once", labels=["optio"])
    provider = make_provider("github", repos=[webapp.url])
    sync.sync_provider(provider.pk)
    task = lifecycle.cancel(Task.objects.get())
    gh.touch(WEBAPP, issue.number, title="Once, edited")  # fetched again by the next sync
    result = sync.sync_provider(provider.pk)
    assert result.stats.created == 0 and result.stats.existing >= 1  # it was read, and left alone
    assert list(Task.objects.values_list("pk", flat=True)) == [task.pk]


def test_an_issue_assigned_by_hand_first_is_not_synced_again(gh, webapp, make_provider):
    issue = gh.add_issue(WEBAPP, "Assigned", labels=["optio"])
    manual = lifecycle.create_task(
        webapp, "Assigned", "p", ticket_source="github", ticket_external_id=str(issue.number)
    )
    provider = make_provider("github", repos=[webapp.url])
    result = sync.sync_provider(provider.pk)
    assert (result.stats.created, result.stats.existing) == (0, 1)
    assert list(Task.objects.values_list("pk", flat=True)) == [manual.pk]


def test_a_disconnected_repository_is_reported(gh, webapp, make_provider):
    provider = make_provider("github", repos=[webapp.url])
    Repo.objects.filter(pk=webapp.pk).delete()
    sync.sync_provider(provider.pk)
    provider.refresh_from_db()
    assert "not a connected repository" in provider.last_error
    assert TicketProvider.objects.get(pk=provider.pk).consecutive_failures == 1


def test_adding_a_repository_keeps_the_others_cursors_and_new_labels_start_over(api, gh, webapp):
    other = Repo.objects.create(url="https://github.com/acme/api")
    add_issues(gh, 3)
    add_issues(gh, 2, repo=other.full_name)
    pk = api.post("/api/tickets/providers", {"source": "github", "config": {"repos": [webapp.url]}}).json()["id"]
    sync.sync_provider(pk)
    before = TicketProvider.objects.get(pk=pk).cursor["repos"][webapp.url]

    api.patch(f"/api/tickets/providers/{pk}", {"config": {"repos": [webapp.url, other.url]}})
    assert TicketProvider.objects.get(pk=pk).cursor == {"repos": {webapp.url: before}}
    gh.clear_log()
    assert sync.sync_provider(pk).stats.created == 2
    assert gh.requests_to("/repos/acme/webapp/issues")[0].query["since"] == before["since"]

    api.patch(f"/api/tickets/providers/{pk}", {"config": {"labels": ["optio"]}})
    assert TicketProvider.objects.get(pk=pk).cursor == {}
