"""Delivery: retries on 429/5xx, permanent errors recorded on the repository, and the claim."""

from __future__ import annotations

import pytest
from django.utils import timezone

from integrations.slack import services
from integrations.slack.models import SlackNotification
from optio.models import Repo
from tests.integrations.slack.conftest import drive, running_task


def completed_notification(committed, repo, enqueue=False, monkeypatch=None) -> SlackNotification:
    """A pending notification for a completed task, without running its delivery task."""
    monkeypatch.setattr("integrations.slack.notifier.enqueue", lambda *a, **k: None)
    task = committed(running_task, repo)
    committed(drive, task, "completed")
    monkeypatch.undo()
    return SlackNotification.objects.get()


def test_429_with_retry_after_then_success_delivers_once(committed, slack, hook_url, slack_repo, monkeypatch):
    notification = completed_notification(committed, slack_repo, monkeypatch=monkeypatch)
    slack.queue(hook_url, "rate_limited", retry_after=7)

    before = timezone.now()
    assert services.deliver(notification.pk) == 7.0  # Slack's Retry-After, not our own backoff
    notification.refresh_from_db()
    assert notification.status == "pending" and notification.attempts == 1
    assert 6.5 <= (notification.next_attempt_at - before).total_seconds() <= 8
    assert slack.messages(hook_url) == []

    assert services.deliver(notification.pk) is None
    notification.refresh_from_db()
    assert notification.status == "sent" and notification.attempts == 2
    assert [p.status for p in slack.posts(hook_url)] == [429, 200]
    assert len(slack.messages(hook_url)) == 1
    assert Repo.objects.get().slack_last_error == ""  # a rate limit is not the repository's fault


def test_celery_task_retries_after_429_and_delivers_once(committed, slack, hook_url, slack_repo, monkeypatch):
    from integrations.slack import notifier

    countdowns = []
    real_enqueue = notifier.enqueue

    def spy(notification_id, countdown=None):
        countdowns.append(countdown)
        real_enqueue(notification_id, countdown)  # eager Celery runs it at once

    monkeypatch.setattr("integrations.slack.tasks.enqueue", spy)
    slack.queue(hook_url, "rate_limited", retry_after=2)
    task = committed(running_task, slack_repo)
    committed(drive, task, "completed")

    assert countdowns == [2.0]
    assert [p.status for p in slack.posts(hook_url)] == [429, 200]
    assert len(slack.messages(hook_url)) == 1


def test_5xx_retries_with_backoff(committed, slack, hook_url, slack_repo, monkeypatch):
    notification = completed_notification(committed, slack_repo, monkeypatch=monkeypatch)
    slack.queue(hook_url, "rollup_error")
    wait = services.deliver(notification.pk)
    assert 4 <= wait <= 6  # first backoff step, 5 s ± 20%
    slack.queue(hook_url, "service_unavailable")
    assert 24 <= services.deliver(notification.pk) <= 36
    assert services.deliver(notification.pk) is None
    assert SlackNotification.objects.get().status == "sent"
    assert len(slack.messages(hook_url)) == 1


def test_invalid_token_stops_and_is_recorded_on_the_repository(committed, slack, hook_url, slack_repo, api):
    slack.set_hook(hook_url, "invalid_token")
    task = committed(running_task, slack_repo)
    committed(drive, task, "completed")

    assert len(slack.posts(hook_url)) == 1  # no retries
    notification = SlackNotification.objects.get()
    assert (notification.status, notification.attempts, notification.last_status_code) == ("failed", 1, 403)
    repo = Repo.objects.get()
    assert "invalid_token" in repo.slack_last_error and "webhook" in repo.slack_last_error
    assert repo.slack_last_error_at is not None
    body = api.get(f"/api/repos/{repo.pk}").json()
    assert "invalid_token" in body["slackLastError"] and body["slackLastErrorAt"]
    assert services.deliver(notification.pk) is None  # settled: a stray re-run sends nothing
    assert len(slack.posts(hook_url)) == 1


@pytest.mark.parametrize(
    "error,status",
    [("no_service", 404), ("channel_not_found", 404), ("channel_is_archived", 410), ("action_prohibited", 403),
     ("posting_to_general_channel_denied", 403), ("team_disabled", 403), ("no_team", 404)],
)  # fmt: skip
def test_permanent_errors_stop_at_once(committed, slack, hook_url, slack_repo, error, status):
    slack.set_hook(hook_url, error)
    committed(drive, committed(running_task, slack_repo), "failed")
    assert [p.status for p in slack.posts(hook_url)] == [status]
    assert SlackNotification.objects.get().status == "failed"
    assert error in Repo.objects.get().slack_last_error


def test_a_later_success_clears_the_error(committed, slack, hook_url, slack_repo):
    slack.set_hook(hook_url, "channel_not_found")
    committed(drive, committed(running_task, slack_repo), "failed")
    assert Repo.objects.get().slack_last_error
    slack.set_hook(hook_url, "ok")
    committed(drive, committed(running_task, slack_repo, title="Again"), "failed")
    repo = Repo.objects.get()
    assert (repo.slack_last_error, repo.slack_last_error_at) == ("", None)


def test_exhausted_retries_are_recorded(committed, slack, hook_url, slack_repo, monkeypatch):
    notification = completed_notification(committed, slack_repo, monkeypatch=monkeypatch)
    slack.set_hook(hook_url, "rollup_error")
    waits = [services.deliver(notification.pk) for _ in range(services.MAX_ATTEMPTS)]
    assert all(w is not None for w in waits[:-1]) and waits[-1] is None
    assert len(slack.posts(hook_url)) == services.MAX_ATTEMPTS
    assert SlackNotification.objects.get().status == "failed"
    assert f"Gave up after {services.MAX_ATTEMPTS} attempts" in Repo.objects.get().slack_last_error


def test_connection_refused_is_retried(committed, slack_repo, monkeypatch):
    from optio import crypto
    from tests.fakes.slack import FakeSlack

    dead = FakeSlack()
    url = dead.webhook_url()
    dead._server.server_close()  # nothing listens there any more
    slack_repo.slack_webhook_url_encrypted = crypto.encrypt(url)
    slack_repo.save()
    notification = completed_notification(committed, slack_repo, monkeypatch=monkeypatch)
    assert services.deliver(notification.pk) is not None
    notification.refresh_from_db()
    # (integrations/http.py currently words a refused connection as a connect timeout.)
    assert notification.status == "pending" and "127.0.0.1" in notification.last_error
    assert notification.attempts == 1 and notification.last_status_code is None


def test_a_claimed_notification_is_not_sent_twice(committed, slack, hook_url, slack_repo, monkeypatch):
    notification = completed_notification(committed, slack_repo, monkeypatch=monkeypatch)
    assert services._claim(notification.pk) is not None  # another worker holds it
    assert services.deliver(notification.pk) is None
    assert slack.posts() == []


def test_slack_turned_off_before_sending_skips(committed, slack, slack_repo, monkeypatch):
    notification = completed_notification(committed, slack_repo, monkeypatch=monkeypatch)
    Repo.objects.filter(pk=slack_repo.pk).update(slack_enabled=False)
    assert services.deliver(notification.pk) is None
    assert SlackNotification.objects.get().status == "skipped"
    assert slack.posts() == []


def test_sweep_re_enqueues_lost_notifications(committed, slack, hook_url, slack_repo, monkeypatch):
    notification = completed_notification(committed, slack_repo, monkeypatch=monkeypatch)
    assert services.sweep() == 0  # too recent: its own enqueue may still be on the way
    SlackNotification.objects.filter(pk=notification.pk).update(
        next_attempt_at=timezone.now() - services.SWEEP_GRACE * 2
    )
    assert services.sweep() == 1  # eager Celery delivers it right away
    assert len(slack.messages(hook_url)) == 1
    assert services.sweep() == 0
