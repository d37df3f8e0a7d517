"""Task events become Slack messages: the four notified events, and everything that stays quiet."""

from __future__ import annotations

import pytest
from django.db import transaction

from integrations.slack.models import SlackNotification
from optio import dispatch, lifecycle
from optio.models import Event
from tests.integrations.slack.conftest import COST, PR, drive, running_task


def block_text(message: dict) -> str:
    """Every piece of text in a message's blocks, in order."""
    parts = []
    for block in message["blocks"]:
        if "text" in block:
            parts.append(block["text"]["text"])
        parts += [f["text"] for f in block.get("fields", [])]
        parts += [e.get("text", "") for e in block.get("elements", [])]
    return "\n".join(parts)


def test_completed_message_links_title_and_shows_repo_state_cost_and_pr(committed, slack, hook_url, slack_repo):
    task = committed(running_task, slack_repo)
    committed(drive, task, "pr_opened", "completed", pr_url=PR, cost_usd=COST)

    completed = [m for m in slack.messages(hook_url) if "*Completed*" in block_text(m)]
    assert len(completed) == 1
    text = block_text(completed[0])
    assert f"<http://127.0.0.1:8000/tasks/{task.pk}/|Add email validation>" in text
    assert "<https://github.com/acme/webapp|acme/webapp>" in text
    assert "`completed`" in text and "(from `pr_opened`)" in text
    assert "$0.35" in text
    assert f"<{PR}|#42>" in text
    assert completed[0]["text"].startswith("Completed: Add email validation (acme/webapp)")
    assert f"/tasks/{task.pk}/" in completed[0]["text"]


def test_failed_message_has_an_excerpt_of_the_error(committed, slack, hook_url, slack_repo):
    task = committed(running_task, slack_repo)
    error = "Tests failed: test_signup <assert> & more\n" + "x" * 5000
    committed(drive, task, "failed", error=error)

    [message] = slack.messages(hook_url)
    text = block_text(message)
    assert "*Failed*" in text
    assert "Tests failed: test_signup &lt;assert&gt; &amp; more" in text  # escaped for mrkdwn
    assert "x" * 1000 in text and "x" * 2000 not in text  # an excerpt, not the whole log
    assert "…```" in text
    assert "Cost" not in text and "Pull request" not in text  # unknown, so not shown
    assert message["text"].startswith("Failed: Add email validation (acme/webapp) — Tests failed: test_signup")


def test_needs_attention_message_gives_the_reason(committed, slack, hook_url, slack_repo):
    task = committed(running_task, slack_repo)
    committed(drive, task, "pr_opened", pr_url=PR)
    slack_repo.slack_notify_on = ["needs_attention"]
    slack_repo.save()
    committed(drive, task, "needs_attention", attention_reason="ci_failed")

    messages = slack.messages(hook_url)
    assert len(messages) == 2  # pr_opened (before the change) and needs_attention
    text = block_text(messages[1])
    assert "*Needs attention*" in text
    assert "CI failed on the pull request." in text and "`ci_failed`" in text
    assert f"<{PR}|#42>" in text
    assert "CI failed on the pull request." in messages[1]["text"]


def test_pr_opened_message_links_the_pr(committed, slack, hook_url, slack_repo):
    task = committed(running_task, slack_repo)
    committed(drive, task, "pr_opened", pr_url=PR, cost_usd=COST)

    [message] = slack.messages(hook_url)
    text = block_text(message)
    assert "*Pull request opened*" in text and f"Opened <{PR}|#42>" in text
    assert "$0.35" in text and "`pr_opened`" in text


@pytest.mark.parametrize("state", ["completed", "failed", "needs_attention", "pr_opened"])
def test_each_notified_event_posts_exactly_one_message(committed, slack, hook_url, slack_repo, state):
    task = committed(running_task, slack_repo)
    assert slack.messages(hook_url) == []  # created, queued, running: not notified
    committed(drive, task, state)
    assert len(slack.messages(hook_url)) == 1
    assert SlackNotification.objects.get().status == "sent"


def test_disabled_repository_gets_no_message(committed, slack, hook_url, slack_repo):
    slack_repo.slack_enabled = False
    slack_repo.save()
    task = committed(running_task, slack_repo)
    committed(drive, task, "completed")
    assert slack.posts() == []
    assert not SlackNotification.objects.exists()


def test_event_not_in_notify_on_gets_no_message(committed, slack, hook_url, slack_repo):
    slack_repo.slack_notify_on = ["failed"]
    slack_repo.save()
    task = committed(running_task, slack_repo)
    committed(drive, task, "pr_opened", "completed", pr_url=PR)
    assert slack.posts() == []
    # A failure is in the list, so it is announced.
    other = committed(running_task, slack_repo, title="Second")
    committed(drive, other, "failed", error="boom")
    assert len(slack.messages(hook_url)) == 1


def test_other_repositories_are_not_told(committed, slack, hook_url, slack_repo):
    from optio.models import Repo

    quiet = Repo.objects.create(url="https://github.com/acme/quiet")
    task = committed(running_task, quiet)
    committed(drive, task, "completed")
    assert slack.posts() == []


def test_redispatch_never_posts_twice(committed, slack, hook_url, slack_repo):
    task = committed(running_task, slack_repo)
    committed(drive, task, "completed")
    event = Event.objects.get(name="task.completed")
    # As the sweeper would after another subscriber failed: dispatch the same event again.
    Event.objects.filter(pk=event.pk).update(dispatched_at=None)
    committed(dispatch.dispatch, event.seq)
    committed(dispatch.dispatch, event.seq)
    assert len(slack.messages(hook_url)) == 1
    assert SlackNotification.objects.filter(event=event).count() == 1


def test_rolled_back_transition_sends_nothing(committed, slack, hook_url, slack_repo):
    task = committed(running_task, slack_repo)

    def fail_after_completing():
        with transaction.atomic():
            lifecycle.transition(task, "completed")
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        committed(fail_after_completing)
    assert slack.posts() == []
    assert not SlackNotification.objects.exists()


def test_nothing_is_sent_inside_the_request_transaction(django_capture_on_commit_callbacks, slack, slack_repo):
    # Without a commit, nothing goes out: Slack only hears about committed events, via Celery.
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        drive(running_task(slack_repo), "completed")
    assert callbacks  # dispatch waits for the commit
    assert slack.posts() == []
