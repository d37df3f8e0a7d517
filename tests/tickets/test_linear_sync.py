"""Linear issues synced into tasks: filters, repository resolution, paging, incremental runs."""

from __future__ import annotations

from optio.models import Repo, Task
from tests.fakes.linear import seed
from tickets import sync
from tickets.models import TicketProvider

from .conftest import LINEAR_KEY


def titles() -> list[str]:
    return sorted(Task.objects.values_list("title", flat=True))


def test_an_open_issue_becomes_one_queued_task_with_its_source(linear, team, linear_provider, webapp):
    issue = linear.add_issue(
        team,
        "Add email validation",
        description="Validate the signup form.",
        comments=[("Ann Lee", "Use the RFC regex, please."), ("Bo Chen", "And a test.")],
    )
    result = sync.sync_provider(linear_provider.pk)
    assert result.status == "ok"
    task = Task.objects.get()
    assert (task.title, task.state, task.repo) == ("Add email validation", "queued", webapp)
    assert (task.ticket_source, task.ticket_external_id, task.ticket_url) == ("linear", "ENG-1", issue.url)
    assert "Validate the signup form." in task.prompt
    assert "Use the RFC regex, please." in task.prompt and "And a test." in task.prompt
    assert task.prompt.index("Use the RFC regex") < task.prompt.index("And a test.")


def test_team_filter_by_id_and_by_key(linear, team, make_provider, webapp):
    other = linear.add_team("OPS")
    linear.add_issue(team, "Engineering work")
    linear.add_issue(other, "Ops work")
    by_id = make_provider("linear", apiKey=LINEAR_KEY, teamId=team.id, repoUrl=webapp.url)
    sync.sync_provider(by_id.pk)
    assert titles() == ["Engineering work"]
    by_key = make_provider("linear", apiKey=LINEAR_KEY, teamId="ops", repoUrl=webapp.url)
    sync.sync_provider(by_key.pk)
    assert titles() == ["Engineering work", "Ops work"]


def test_project_filter(linear, team, make_provider, webapp):
    web = linear.add_project("Web")
    linear.add_issue(team, "In the project", project=web)
    linear.add_issue(team, "Elsewhere")
    provider = make_provider("linear", apiKey=LINEAR_KEY, teamId=team.id, projectId=web.id, repoUrl=webapp.url)
    sync.sync_provider(provider.pk)
    assert titles() == ["In the project"]


def test_labels_match_any_of_them(linear, team, make_provider, webapp):
    linear.add_issue(team, "Has optio", labels=["optio"])
    linear.add_issue(team, "Has agent", labels=["Agent", "bug"])
    linear.add_issue(team, "Has neither", labels=["bug"])
    provider = make_provider("linear", apiKey=LINEAR_KEY, labels=["optio", "agent"], repoUrl=webapp.url)
    sync.sync_provider(provider.pk)
    assert titles() == ["Has agent", "Has optio"]


def test_completed_and_canceled_issues_are_not_synced(linear, team, linear_provider):
    for state in ("triage", "backlog", "unstarted", "started", "completed", "canceled"):
        linear.add_issue(team, f"In {state}", state=state)
    sync.sync_provider(linear_provider.pk)
    assert titles() == ["In backlog", "In started", "In triage", "In unstarted"]


def test_a_repo_label_chooses_the_repository_and_overrides_the_default(linear, team, linear_provider, webapp):
    api = Repo.objects.create(url="https://github.com/acme/api")
    linear.add_issue(team, "For the API", labels=["repo:acme/api"])
    linear.add_issue(team, "For the default")
    sync.sync_provider(linear_provider.pk)
    assert dict(Task.objects.values_list("title", "repo")) == {"For the API": api.pk, "For the default": webapp.pk}


def test_an_issue_with_no_repository_is_skipped_and_reported(linear, team, make_provider):
    Repo.objects.create(url="https://github.com/acme/api")
    provider = make_provider("linear", apiKey=LINEAR_KEY, teamId=team.id)
    linear.add_issue(team, "Labelled", labels=["repo:acme/api"])
    lost = linear.add_issue(team, "No repository at all")
    unknown = linear.add_issue(team, "Unconnected repository", labels=["repo:acme/nowhere"])
    result = sync.sync_provider(provider.pk)
    assert result.status == "ok" and result.stats.skipped == 2
    assert titles() == ["Labelled"]
    provider.refresh_from_db()
    assert set(provider.skipped) == {lost.identifier, unknown.identifier}
    assert "repo:owner/name" in provider.skipped[lost.identifier]["reason"]
    assert "acme/nowhere is not a connected repository" in provider.skipped[unknown.identifier]["reason"]

    # Once the issue names a repository it is picked up and leaves the skipped list.
    linear.update_issue(lost, labels=["repo:acme/api"])
    sync.sync_provider(provider.pk)
    provider.refresh_from_db()
    assert "No repository at all" in titles()
    assert set(provider.skipped) == {unknown.identifier}


def test_pages_are_followed_and_each_issue_becomes_one_task(linear, team, linear_provider):
    seed(linear, team, 120)
    result = sync.sync_provider(linear_provider.pk)
    assert (result.stats.created, result.stats.pages) == (120, 3)
    assert Task.objects.count() == 120


def test_a_second_sync_asks_only_for_changes_and_creates_nothing(linear, team, linear_provider):
    issues = seed(linear, team, 60)
    sync.sync_provider(linear_provider.pk)
    linear.requests.clear()
    result = sync.sync_provider(linear_provider.pk)
    assert (result.status, result.stats.created) == ("ok", 0)
    assert len(linear.requests) == 1
    sent = linear.requests[0].variables["filter"]["and"]
    assert {"updatedAt": {"gte": max(i.updatedAt for i in issues)}} in sent

    new = linear.add_issue(team, "Filed later")
    result = sync.sync_provider(linear_provider.pk)
    assert (result.stats.created, result.stats.seen) == (1, 2)  # the new one, and the watermark issue again
    assert Task.objects.filter(ticket_external_id=new.identifier).count() == 1


def test_a_500_on_page_3_records_the_error_and_the_next_sync_completes_without_duplicates(
    linear, team, linear_provider
):
    seed(linear, team, 175)  # four pages of 50
    linear.fail(500, after=2)
    result = sync.sync_provider(linear_provider.pk)
    assert result.status == "failed"
    linear_provider.refresh_from_db()
    assert linear_provider.consecutive_failures == 1
    assert "HTTP 500" in linear_provider.last_error and linear_provider.last_error_kind == "unavailable"
    assert Task.objects.count() == 100  # pages 1 and 2 are kept, with the cursor after them
    assert linear_provider.cursor["after"]

    result = sync.sync_provider(linear_provider.pk)
    assert result.status == "ok" and result.stats.created == 75
    assert Task.objects.count() == 175
    assert Task.objects.values("ticket_external_id").distinct().count() == 175
    linear_provider.refresh_from_db()
    assert (linear_provider.consecutive_failures, linear_provider.last_error) == (0, "")
    assert set(linear_provider.cursor) == {"updatedAfter"}


def test_a_rejected_key_is_recorded_as_bad_credentials(linear, team, make_provider, webapp):
    provider = make_provider("linear", apiKey="lin_api_revoked", repoUrl=webapp.url)
    linear.add_issue(team, "Anything")
    result = sync.sync_provider(provider.pk)
    provider.refresh_from_db()
    assert (result.status, provider.last_error_kind) == ("failed", "bad_credentials")
    assert "Linear rejected the API key" in provider.last_error
    assert "lin_api_revoked" not in provider.last_error


def test_a_rate_limit_defers_the_next_sync_without_counting_as_a_failure(linear, team, linear_provider):
    linear.add_issue(team, "Anything")
    linear.fail(kind="ratelimited")
    result = sync.sync_provider(linear_provider.pk)
    linear_provider.refresh_from_db()
    assert (result.status, linear_provider.last_error_kind) == ("failed", "rate_limited")
    assert linear_provider.consecutive_failures == 0
    assert linear_provider.next_sync_after is not None
    assert linear_provider.pk not in sync.due_provider_ids()
    TicketProvider.objects.filter(pk=linear_provider.pk).update(next_sync_after=None)
    assert sync.sync_provider(linear_provider.pk).stats.created == 1
