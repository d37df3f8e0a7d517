"""Write-back to the ticket a task came from: GitHub issue comments and closing, Linear comments and states."""

from __future__ import annotations

import pytest

from integrations.prwatch import watcher, writeback
from integrations.prwatch.models import Writeback
from optio import dispatch, lifecycle, secrets
from optio.models import Event, Task, TaskLog
from tests.fakes.linear import add_workflow_state
from tests.integrations.prwatch.conftest import make_task, pr_url


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Run `fn` and everything it leaves for after commit: event dispatch, then the write-back it records."""

    def runner(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return runner


def reload(task: Task) -> Task:
    return Task.objects.get(pk=task.pk)


def comments(gh, number: int) -> list[str]:
    return [c["body"] for c in gh.issue("acme/webapp", number).comments]


@pytest.fixture
def issue(gh, repo, github_token):
    return gh.add_issue("acme/webapp", "Add email validation", "Reject addresses without an @.")


@pytest.fixture
def github_task(run, repo, issue):
    return run(make_task, repo, None, ticket_source="github", ticket_external_id=str(issue.number),
               ticket_url=f"https://github.com/acme/webapp/issues/{issue.number}")  # fmt: skip


# -- GitHub issues -----------------------------------------------------------------------


def test_opening_the_pr_comments_the_link_on_the_issue(run, gh, issue, github_task):
    pull = gh.add_pull("acme/webapp", "Add email validation")

    run(lifecycle.transition, github_task, "pr_opened", pr_url=pr_url(pull.number))

    assert comments(gh, issue.number) == [
        f"Optio opened a pull request for this issue: {pr_url(pull.number)}\n\nFollow the task: {github_task.page_url}"
    ]
    assert gh.issue("acme/webapp", issue.number).state == "open"
    assert reload(github_task).writeback_error == ""
    log = TaskLog.objects.filter(task=github_task, type="writeback").last()
    assert log.content == f"Write-back to acme/webapp#{issue.number}: Commented on acme/webapp#{issue.number}."


def test_a_merged_pr_comments_and_closes_the_issue_as_completed(run, gh, issue, github_task):
    pull = gh.add_pull("acme/webapp", "Add email validation")
    task = run(lifecycle.transition, github_task, "pr_opened", pr_url=pr_url(pull.number))
    gh.merge_pull("acme/webapp", pull.number)

    run(watcher.check_task, task.pk)

    assert reload(task).state == "completed"
    closed = gh.issue("acme/webapp", issue.number)
    assert (closed.state, closed.state_reason) == ("closed", "completed")
    assert comments(gh, issue.number)[-1] == (
        f"{pr_url(pull.number)} was merged, so Optio's task for this issue is complete; closing the issue.\n\n"
        f"Task: {task.page_url}"
    )
    patch = gh.requests_to(f"/issues/{issue.number}", method="PATCH")[-1]
    assert patch.body == b'{"state": "closed", "state_reason": "completed"}'


def test_a_failed_task_comments_the_reason(run, gh, issue, github_task):
    pull = gh.add_pull("acme/webapp", "Add email validation")
    task = run(lifecycle.transition, github_task, "pr_opened", pr_url=pr_url(pull.number))
    gh.close_pull("acme/webapp", pull.number)

    run(watcher.check_task, task.pk)

    assert reload(task).state == "failed"
    assert comments(gh, issue.number)[-1] == (
        f"Optio's task for this issue failed: PR closed without merging\n\nTask: {task.page_url}"
    )
    assert gh.issue("acme/webapp", issue.number).state == "open"


def test_a_failure_without_a_pr_comments_the_error_it_was_given(run, gh, issue, github_task):
    run(lifecycle.transition, github_task, "failed", error="The agent ran out of budget.")

    assert comments(gh, issue.number) == [
        f"Optio's task for this issue failed: The agent ran out of budget.\n\nTask: {github_task.page_url}"
    ]


def test_a_redispatched_event_writes_back_once(run, gh, issue, github_task):
    pull = gh.add_pull("acme/webapp", "Add email validation")
    run(lifecycle.transition, github_task, "pr_opened", pr_url=pr_url(pull.number))
    event = Event.objects.get(task=github_task, name="task.pr_opened")

    run(writeback.on_event, event)  # a worker died after the subscriber ran: the event comes again
    run(dispatch.dispatch, event.seq)

    assert len(comments(gh, issue.number)) == 1
    assert Writeback.objects.filter(task=github_task).count() == 1


def test_returning_to_pr_opened_with_the_same_pr_does_not_comment_again(run, gh, issue, github_task):
    pull = gh.add_pull("acme/webapp", "Add email validation")
    task = run(lifecycle.transition, github_task, "pr_opened", pr_url=pr_url(pull.number))
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="failure")
    run(watcher.check_task, task.pk)
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="success")
    run(watcher.check_task, task.pk)

    assert reload(task).state == "pr_opened"
    assert len(comments(gh, issue.number)) == 1


def test_a_write_back_failure_is_recorded_and_does_not_block_the_transition(run, gh, issue, github_task):
    gh.fail(403, path="/comments", method="POST", times=None, message="Resource not accessible by integration")
    pull = gh.add_pull("acme/webapp", "Add email validation")

    task = run(lifecycle.transition, github_task, "pr_opened", pr_url=pr_url(pull.number))

    task = reload(task)
    assert task.state == "pr_opened"
    assert task.writeback_error.startswith(f"Write-back to acme/webapp#{issue.number} failed. Could not comment on")
    assert "Resource not accessible by integration" in task.writeback_error
    log = TaskLog.objects.filter(task=task, type="writeback").last()
    assert (log.content, log.metadata["ok"]) == (task.writeback_error, False)
    assert Writeback.objects.get(task=task).status == "failed"
    assert comments(gh, issue.number) == []


def test_closing_is_attempted_even_when_the_comment_fails(run, gh, issue, github_task):
    pull = gh.add_pull("acme/webapp", "Add email validation")
    task = run(lifecycle.transition, github_task, "pr_opened", pr_url=pr_url(pull.number))
    gh.fail(422, path="/comments", method="POST", times=None, message="Validation Failed")
    gh.merge_pull("acme/webapp", pull.number)

    run(watcher.check_task, task.pk)

    assert reload(task).state == "completed"
    assert gh.issue("acme/webapp", issue.number).state == "closed"
    assert "Could not comment on" in reload(task).writeback_error


def test_a_transient_github_failure_is_retried_without_repeating_done_steps(run, gh, issue, github_task):
    pull = gh.add_pull("acme/webapp", "Add email validation")
    task = run(lifecycle.transition, github_task, "pr_opened", pr_url=pr_url(pull.number))
    gh.merge_pull("acme/webapp", pull.number)
    gh.fail(502, path=f"/issues/{issue.number}", method="PATCH", times=1)  # closing fails once

    run(watcher.check_task, task.pk)

    row = Writeback.objects.get(task=task, action="completed")
    assert (row.status, row.attempts, row.steps_done) == ("sent", 2, ["comment", "close"])
    assert len(comments(gh, issue.number)) == 2  # the PR link, then one completion comment
    assert gh.issue("acme/webapp", issue.number).state == "closed"
    assert reload(task).writeback_error == ""


def test_write_back_off_for_the_repository_sends_nothing(run, gh, repo, issue, github_task):
    repo.writeback_enabled = False
    repo.save()
    pull = gh.add_pull("acme/webapp", "Add email validation")

    run(lifecycle.transition, github_task, "pr_opened", pr_url=pr_url(pull.number))

    assert comments(gh, issue.number) == []
    assert not Writeback.objects.exists()


def test_a_task_without_a_ticket_writes_nothing(run, gh, repo, github_token):
    pull = gh.add_pull("acme/webapp", "Add email validation")

    run(make_task, repo, pr_url(pull.number))

    assert not Writeback.objects.exists()
    assert gh.requests_to("/comments") == []


# -- Linear ------------------------------------------------------------------------------


@pytest.fixture
def team(linear):
    team = linear.add_team("ENG")
    # Two started states: the first by position is the one a task starting moves the issue to.
    add_workflow_state(team, "In Review", "started", 3.5)
    add_workflow_state(team, "Building", "started", 2.5)
    return team


@pytest.fixture
def linear_issue(linear, team):
    return linear.add_issue(team, "Add email validation", state="unstarted")


@pytest.fixture
def linear_provider(db, repo):
    from tickets import services

    return services.create_provider(
        "linear", {"apiKey": "lin_api_test_key", "teamId": "ENG", "repoUrl": repo.url}
    ).provider


def linear_task(run, repo, issue, *, running: bool = True) -> Task:
    task = run(lifecycle.create_task, repo, issue.title, "prompt", ticket_source="linear",
               ticket_external_id=issue.identifier, ticket_url=issue.url)  # fmt: skip
    return run(lifecycle.transition, task, "running") if running else task


def test_a_linear_issue_moves_to_the_first_started_state_when_the_task_runs(
    run, linear, repo, linear_issue, linear_provider
):
    task = linear_task(run, repo, linear_issue)

    assert linear_issue.state.name == "Building"
    move = [r for r in linear.requests if r.operation_name == "OptioIssueMove" or "issueUpdate" in r.query]
    assert len(move) == 1 and move[0].variables["id"] == linear_issue.id
    assert move[0].headers["authorization"] == "lin_api_test_key"
    assert TaskLog.objects.filter(task=task, content=f"Write-back to {linear_issue.identifier}: "
                                                    f"Moved {linear_issue.identifier} to Building.").exists()  # fmt: skip


def test_a_linear_issue_gets_the_pr_link_and_moves_to_completed(
    run, gh, linear, repo, github_token, linear_issue, linear_provider
):
    task = linear_task(run, repo, linear_issue)
    pull = gh.add_pull("acme/webapp", "Add email validation")

    task = run(lifecycle.transition, task, "pr_opened", pr_url=pr_url(pull.number))
    assert [c.body for c in linear_issue.comment_list] == [
        f"Optio opened a pull request for this issue: {pr_url(pull.number)}\n\nFollow the task: {task.page_url}"
    ]

    gh.merge_pull("acme/webapp", pull.number)
    run(watcher.check_task, task.pk)

    assert reload(task).state == "completed"
    assert (linear_issue.state.name, linear_issue.state.type) == ("Done", "completed")
    assert reload(task).writeback_error == ""


def test_a_linear_issue_already_further_along_is_left_where_it_is(run, linear, repo, team, linear_provider):
    issue = linear.add_issue(team, "Already in review", state="started")
    issue.state = next(s for s in team.states.values() if s.name == "In Review")

    task = linear_task(run, repo, issue)

    assert issue.state.name == "In Review"
    assert TaskLog.objects.filter(task=task, content__contains="already In Review; left as it is").exists()


def test_the_linear_api_key_secret_is_used_without_a_provider(run, linear, repo, linear_issue):
    secrets.set_secret("LINEAR_API_KEY", "lin_api_test_key")

    linear_task(run, repo, linear_issue)

    assert linear_issue.state.name == "Building"


def test_a_linear_write_back_without_a_key_is_recorded_on_the_task(run, linear, repo, linear_issue):
    task = linear_task(run, repo, linear_issue)

    task = reload(task)
    assert task.state == "running"
    assert task.writeback_error.startswith(f"Write-back to {linear_issue.identifier} failed.")
    assert "LINEAR_API_KEY" in task.writeback_error
    assert linear_issue.state.type == "unstarted"


def test_a_linear_failure_is_recorded_without_blocking(run, linear, repo, linear_issue, linear_provider):
    linear.fail(500, times=10)

    task = linear_task(run, repo, linear_issue)

    task = reload(task)
    assert task.state == "running"
    assert "Linear" in task.writeback_error
    assert Writeback.objects.get(task=task).attempts == writeback.MAX_ATTEMPTS
