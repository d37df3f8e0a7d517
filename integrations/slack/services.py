"""Slack services: deliver one notification (with its retry policy), the synchronous test
message, and recording a repository's last Slack error."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from integrations.slack import client, messages
from integrations.slack.models import SlackNotification
from integrations.slack.notifier import NOTIFIED, enqueue
from optio import crypto
from optio.models import Repo

log = logging.getLogger(__name__)

S = SlackNotification.Status
MAX_ATTEMPTS = 6
# Waits after the 1st, 2nd, ... failed attempt when Slack names none (5xx, timeouts); ±20% jitter.
BACKOFF = (5, 30, 120, 600, 1800)
CLAIM_SECONDS = 120  # longer than one attempt (15 s deadline); a dead worker's claim expires after it
SWEEP_GRACE = timedelta(seconds=60)
TEST_TIMEOUT = 10.0


def backoff(attempt: int) -> float:
    base = BACKOFF[min(attempt, len(BACKOFF)) - 1]
    return round(base * random.uniform(0.8, 1.2), 1)


def _claim(notification_id: int) -> SlackNotification | None:
    """Atomically take the row so two workers never post the same message."""
    now = timezone.now()
    claimable = Q(status=S.PENDING) | Q(status=S.SENDING, claimed_until__lt=now)
    taken = SlackNotification.objects.filter(claimable, pk=notification_id).update(
        status=S.SENDING, claimed_until=now + timedelta(seconds=CLAIM_SECONDS)
    )
    if not taken:
        return None
    return SlackNotification.objects.select_related("event", "repo").get(pk=notification_id)


def deliver(notification_id: int) -> float | None:
    """Try to post one notification. Returns the seconds to wait before the next attempt,
    or None when the notification is settled (sent, failed, skipped or not ours to send)."""
    notification = _claim(notification_id)
    if notification is None:
        return None
    repo, event = notification.repo, notification.event
    if not (repo.slack_enabled and repo.slack_webhook_url_encrypted):
        _settle(notification, S.SKIPPED, "Slack was turned off for the repository before the message was sent.")
        return None
    try:
        url = crypto.decrypt(repo.slack_webhook_url_encrypted)
    except ValueError as exc:
        _settle(notification, S.FAILED, str(exc))
        record_error(repo, str(exc))
        return None

    payload = messages.task_message(NOTIFIED[event.name], event.data)
    result = client.post_message(url, payload)
    notification.attempts += 1
    notification.last_status_code = result.status
    if result.ok:
        notification.last_error = ""
        notification.sent_at = timezone.now()
        _settle(notification, S.SENT)
        clear_error(repo)
        return None
    if result.retryable and notification.attempts < MAX_ATTEMPTS:
        wait = result.retry_after if result.retry_after is not None else backoff(notification.attempts)
        notification.status = S.PENDING
        notification.last_error = result.message
        notification.next_attempt_at = timezone.now() + timedelta(seconds=wait)
        notification.claimed_until = None
        notification.save()
        log.info(
            "Slack notification %s for %s: attempt %s failed (%s); retrying in %ss",
            notification.pk, repo.full_name, notification.attempts, result.code, wait,
        )  # fmt: skip
        return wait
    reason = result.message
    if result.retryable:
        reason = f"{result.message} Gave up after {notification.attempts} attempts."
    _settle(notification, S.FAILED, reason)
    record_error(repo, reason)
    log.warning("Slack notification %s for %s failed: %s", notification.pk, repo.full_name, result.code)
    return None


def _settle(notification: SlackNotification, status: str, error: str = "") -> None:
    notification.status = status
    notification.claimed_until = None
    if error:
        notification.last_error = error
    notification.save()


def record_error(repo: Repo, message: str) -> None:
    Repo.objects.filter(pk=repo.pk).update(slack_last_error=message[:2000], slack_last_error_at=timezone.now())


def clear_error(repo: Repo) -> None:
    Repo.objects.filter(pk=repo.pk).exclude(slack_last_error="", slack_last_error_at=None).update(
        slack_last_error="", slack_last_error_at=None
    )


def sweep() -> int:
    """Re-enqueue notifications whose enqueue or worker was lost; returns how many."""
    now = timezone.now()
    due = SlackNotification.objects.filter(
        Q(status=S.PENDING, next_attempt_at__lt=now - SWEEP_GRACE) | Q(status=S.SENDING, claimed_until__lt=now)
    ).values_list("pk", flat=True)[:500]
    ids = list(due)
    for pk in ids:
        enqueue(pk)
    return len(ids)


@dataclass(frozen=True)
class TestResult:
    ok: bool
    error: str = ""
    code: str = ""
    status: int | None = None


def send_test(webhook_url: str, repo: Repo | None = None) -> TestResult:
    """Post the sample message now (the settings page's "Send test"); no retries.

    When it goes to the repository's stored URL and succeeds, its last error is cleared.
    """
    result = client.post_message(webhook_url, messages.sample_message(repo), timeout=TEST_TIMEOUT)
    if result.ok:
        if repo is not None and _is_stored_url(repo, webhook_url):
            clear_error(repo)
        return TestResult(True, status=result.status)
    return TestResult(False, result.message, result.code, result.status)


def _is_stored_url(repo: Repo, url: str) -> bool:
    try:
        return bool(repo.slack_webhook_url_encrypted) and crypto.decrypt(repo.slack_webhook_url_encrypted) == url
    except ValueError:
        return False


def stored_url(repo: Repo) -> str:
    """The repository's webhook URL in plaintext, or "" (callers must never show or log it)."""
    if not repo.slack_webhook_url_encrypted:
        return ""
    return crypto.decrypt(repo.slack_webhook_url_encrypted)
