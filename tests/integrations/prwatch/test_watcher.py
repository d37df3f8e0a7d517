"""The PR watcher against the fake GitHub: each transition, edge-triggering, conditional requests."""

from __future__ import annotations

import pytest

from integrations.prwatch import tasks, watcher
from integrations.prwatch.models import PullWatch
from optio import lifecycle
from optio.celery import app as celery_app
from optio.models import Event, Task, TaskLog
from tests.integrations.prwatch.conftest import make_task, pr_url


def events_of(task: Task) -> list[str]:
    return list(Event.objects.filter(task=task).order_by("seq").values_list("name", flat=True))


def reload(task: Task) -> Task:
    return Task.objects.get(pk=task.pk)


def test_a_merged_pr_completes_the_task(gh, pull, task):
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="success")
    gh.merge_pull("acme/webapp", pull.number)

    result = watcher.check_task(task.pk)

    task = reload(task)
    assert (result.outcome, result.to) == ("transitioned", "completed")
    assert task.state == "completed"
    assert task.pr_status["state"] == "merged" and task.pr_status["merged"] is True
    assert events_of(task)[-1] == "task.completed"
    assert Event.objects.filter(task=task).last().data["fromState"] == "pr_opened"
    assert TaskLog.objects.filter(task=task, type="prwatch", content__contains="was merged").exists()


def test_a_pr_closed_without_merging_fails_the_task(gh, pull, task):
    gh.close_pull("acme/webapp", pull.number)

    watcher.check_task(task.pk)

    task = reload(task)
    assert task.state == "failed"
    assert task.error == "PR closed without merging"
    assert task.pr_status["state"] == "closed"
    assert Event.objects.filter(task=task).last().data["error"] == "PR closed without merging"


def test_a_failing_check_run_needs_attention_with_the_failing_check_names(gh, pull, task):
    gh.add_check_run("acme/webapp", pull.head_sha, "lint", conclusion="success")
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="failure")
    gh.add_check_run("acme/webapp", pull.head_sha, "types", conclusion="timed_out")
    gh.add_check_run("acme/webapp", pull.head_sha, "e2e", status="in_progress", conclusion=None)

    watcher.check_task(task.pk)

    task = reload(task)
    assert task.state == "needs_attention"
    assert task.attention_reason == "ci_failed"
    assert task.error == f"CI failed on {pull.head_sha[:7]}: test, types"
    assert task.pr_status["checks"] == {
        "state": "failure", "total": 4, "failing": ["test", "types"], "pending": ["e2e"], "passing": ["lint"],
    }  # fmt: skip
    event = Event.objects.filter(task=task).last()
    assert (event.name, event.data["reason"]) == ("task.needs_attention", "ci_failed")


def test_a_failing_commit_status_counts_as_failing_ci(gh, pull, task):
    gh.add_status("acme/webapp", pull.head_sha, "ci/jenkins", "pending")
    gh.add_status("acme/webapp", pull.head_sha, "ci/jenkins", "error", "Build broke")

    watcher.check_task(task.pk)

    task = reload(task)
    assert (task.state, task.attention_reason) == ("needs_attention", "ci_failed")
    assert task.pr_status["checks"]["failing"] == ["ci/jenkins"]


def test_a_change_request_needs_attention_with_the_review_text(gh, pull, task):
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="success")
    gh.add_review("acme/webapp", pull.number, "bob", "APPROVED")
    gh.add_review("acme/webapp", pull.number, "alice", "COMMENTED", "Looks interesting.")
    gh.add_review("acme/webapp", pull.number, "alice", "CHANGES_REQUESTED", "Also reject two @ signs.")

    watcher.check_task(task.pk)

    task = reload(task)
    assert (task.state, task.attention_reason) == ("needs_attention", "changes_requested")
    assert task.error == "Changes requested by alice: Also reject two @ signs."
    assert task.pr_status["reviewDecision"] == "changes_requested"
    assert task.pr_status["reviewText"] == "Also reject two @ signs."
    assert task.pr_status["changesRequestedBy"] == ["alice"]


def test_fixed_checks_bring_the_task_back_to_pr_opened(gh, pull, task):
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="failure")
    watcher.check_task(task.pk)
    assert reload(task).state == "needs_attention"

    sha = gh.push("acme/webapp", pull.number)
    gh.add_check_run("acme/webapp", sha, "test", status="queued", conclusion=None)
    assert watcher.check_task(task.pk).outcome == "observed"  # pending: not passing yet
    assert reload(task).state == "needs_attention"

    gh.add_check_run("acme/webapp", sha, "test", conclusion="success")  # the re-run of the same check
    result = watcher.check_task(task.pk)

    task = reload(task)
    assert (result.outcome, task.state) == ("transitioned", "pr_opened")
    assert (task.attention_reason, task.error) == ("", "")
    assert task.pr_status["checks"]["state"] == "success"
    assert events_of(task)[-2:] == ["task.needs_attention", "task.pr_opened"]


def test_an_outstanding_change_request_keeps_the_task_until_that_reviewer_approves(gh, pull, task):
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="failure")
    gh.add_review("acme/webapp", pull.number, "alice", "CHANGES_REQUESTED", "Rename the helper.")
    watcher.check_task(task.pk)
    assert reload(task).attention_reason == "ci_failed"

    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="success")
    gh.add_review("acme/webapp", pull.number, "bob", "APPROVED")  # someone else's approval does not lift it
    watcher.check_task(task.pk)
    task = reload(task)
    assert (task.state, task.attention_reason) == ("needs_attention", "changes_requested")
    assert task.error == "Changes requested by alice: Rename the helper."

    gh.add_review("acme/webapp", pull.number, "alice", "APPROVED", "Thanks!")
    watcher.check_task(task.pk)
    task = reload(task)
    assert task.state == "pr_opened"
    assert task.pr_status["reviewDecision"] == "approved"
    assert task.pr_status["approvedBy"] == ["alice", "bob"]


def test_a_dismissed_change_request_no_longer_holds_the_task(gh, pull, task):
    review = gh.add_review("acme/webapp", pull.number, "alice", "CHANGES_REQUESTED", "No.")
    watcher.check_task(task.pk)
    assert reload(task).state == "needs_attention"

    gh.dismiss_review("acme/webapp", pull.number, review["id"])
    watcher.check_task(task.pk)

    assert reload(task).state == "pr_opened"


def test_the_same_observation_twice_fires_one_event(gh, pull, task):
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="failure")

    first = watcher.check_task(task.pk)
    second = watcher.check_task(task.pk)

    assert (first.outcome, second.outcome) == ("transitioned", "unchanged")
    assert Event.objects.filter(task=task, name="task.needs_attention").count() == 1


def test_a_task_moved_by_hand_is_not_pushed_back_by_an_unchanged_pr(gh, pull, task):
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="failure")
    watcher.check_task(task.pk)
    lifecycle.transition(reload(task), "pr_opened")  # a person decides the red check does not matter

    assert watcher.check_task(task.pk).outcome == "unchanged"
    assert reload(task).state == "pr_opened"

    gh.add_check_run("acme/webapp", pull.head_sha, "lint", conclusion="failure")  # something new fails
    watcher.check_task(task.pk)
    assert reload(task).state == "needs_attention"
    assert Event.objects.filter(task=task, name="task.needs_attention").count() == 2


def test_a_reason_the_watcher_did_not_give_is_not_taken_back(gh, pull, task):
    lifecycle.transition(task, "needs_attention", attention_reason="agent_question")
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="success")

    assert watcher.check_task(task.pk).outcome == "observed"

    task = reload(task)
    assert (task.state, task.attention_reason) == ("needs_attention", "agent_question")
    assert task.pr_status["verdict"] == "passing"


def test_an_unchanged_pr_is_answered_with_304s_and_costs_no_rate_limit(gh, pull, task):
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="success")
    gh.add_status("acme/webapp", pull.head_sha, "ci/jenkins", "success")
    gh.add_review("acme/webapp", pull.number, "alice", "APPROVED")
    watcher.check_task(task.pk)
    remaining = gh.remaining[gh.token]
    gh.clear_log()

    assert watcher.check_task(task.pk).outcome == "unchanged"

    sent = gh.requests_to("/repos/acme/webapp/")
    assert [r.path.rsplit("/", 1)[-1] for r in sent] == ["2", "check-runs", "status", "reviews"]
    assert {r.status for r in sent} == {304}
    assert all(r.headers.get("if-none-match") for r in sent)
    assert gh.remaining[gh.token] == remaining


def test_a_pr_in_another_repository_is_ignored(gh, repo, github_token):
    gh.add_repo("evil/fork")
    other = gh.add_pull("evil/fork", "Same change, other repo")
    gh.merge_pull("evil/fork", other.number)
    task = make_task(repo, pr_url(other.number, "evil/fork"))

    assert watcher.due_task_ids() == []
    assert watcher.check_task(task.pk).outcome == "ignored"
    tasks.poll.delay()

    assert reload(task).state == "pr_opened"
    assert gh.requests == []


def test_the_poller_checks_every_task_waiting_on_its_own_pr(gh, repo, github_token):
    merged = gh.add_pull("acme/webapp", "One")
    failing = gh.add_pull("acme/webapp", "Two")
    gh.merge_pull("acme/webapp", merged.number)
    gh.add_check_run("acme/webapp", failing.head_sha, "test", conclusion="failure")
    a = make_task(repo, pr_url(merged.number), title="One")
    b = make_task(repo, pr_url(failing.number), title="Two")
    running = make_task(repo, None, title="Still running")

    assert sorted(watcher.due_task_ids()) == sorted([str(a.pk), str(b.pk)])
    assert tasks.poll.delay().get() == 2

    assert (reload(a).state, reload(b).state, reload(running).state) == ("completed", "needs_attention", "running")


def test_the_poll_runs_on_beat_every_pr_watch_interval(settings):
    entry = celery_app.conf.beat_schedule["prwatch-poll"]
    assert entry["task"] == "prwatch.poll"
    assert entry["schedule"] == float(settings.OPTIO_PR_WATCH_INTERVAL)


def test_a_github_failure_is_recorded_once_and_the_next_poll_tries_again(gh, pull, task):
    gh.fail(502, path="/pulls/", times=2)

    assert watcher.check_task(task.pk).outcome == "error"
    assert watcher.check_task(task.pk).outcome == "error"

    watch = PullWatch.objects.get(task=task)
    assert "HTTP 502" in watch.last_error
    assert TaskLog.objects.filter(task=task, content__startswith="Could not check the pull request").count() == 1
    assert reload(task).state == "pr_opened"
    assert watcher.check_task(task.pk).outcome == "observed"
    assert PullWatch.objects.get(task=task).last_error == ""


def test_a_rate_limit_pauses_the_task_until_the_reset(gh, pull, task):
    gh.rate_limit_exhausted(path="/pulls/")

    assert watcher.check_task(task.pk).outcome == "error"

    watch = PullWatch.objects.get(task=task)
    assert watch.next_check_after is not None
    assert watcher.due_task_ids() == []


def test_a_new_pr_url_starts_a_new_observation(gh, repo, pull, task):
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="failure")
    watcher.check_task(task.pk)
    lifecycle.transition(reload(task), "running")
    second = gh.add_pull("acme/webapp", "Second try")
    gh.add_check_run("acme/webapp", second.head_sha, "test", conclusion="failure")
    lifecycle.transition(reload(task), "pr_opened", pr_url=pr_url(second.number))

    watcher.check_task(task.pk)

    task = reload(task)
    assert task.state == "needs_attention"
    assert task.pr_status["number"] == second.number
    assert PullWatch.objects.get(task=task).pr_url == pr_url(second.number)


def test_a_task_moved_while_github_was_asked_loses_quietly(gh, pull, task, monkeypatch):
    gh.merge_pull("acme/webapp", pull.number)
    real = watcher.observe

    def observe_then_cancel(task_obj, number, **kwargs):
        status = real(task_obj, number, **kwargs)
        lifecycle.cancel(Task.objects.get(pk=task_obj.pk))  # someone cancels it meanwhile
        return status

    monkeypatch.setattr(watcher, "observe", observe_then_cancel)
    result = watcher.check_task(task.pk)

    assert result.outcome == "observed"
    assert reload(task).state == "cancelled"
    assert not Event.objects.filter(task=task, name="task.completed").exists()


@pytest.mark.parametrize("mergeable", [True, False, None])
def test_the_task_api_shows_checks_review_decision_and_mergeable(api, gh, pull, task, mergeable):
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="success")
    gh.add_review("acme/webapp", pull.number, "alice", "APPROVED")
    gh.set_mergeable("acme/webapp", pull.number, mergeable, "clean" if mergeable else "dirty")
    watcher.check_task(task.pk)

    body = api.get(f"/api/tasks/{task.pk}").json()

    status = body["prStatus"]
    assert status["checks"]["state"] == "success" and status["checks"]["passing"] == ["test"]
    assert status["reviewDecision"] == "approved"
    assert status["mergeable"] is mergeable
    assert status["headSha"] == pull.head_sha
    assert status["url"] == f"https://github.com/acme/webapp/pull/{pull.number}"
    assert status["observedAt"].endswith("Z")
