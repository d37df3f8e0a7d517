"""The Slack subscriber of the event spine: decide whether a dispatched event becomes a message.

Called once per dispatch of every Event (possibly more than once for the same event: a
re-dispatch after another subscriber failed). The (event, repo) row is the idempotency
key; the message itself is sent by a Celery task after the row commits, never here.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from integrations.slack.models import SlackNotification
from optio.models import Event, Repo

log = logging.getLogger(__name__)

NOTIFIED = {f"task.{state}": state for state in ("completed", "failed", "needs_attention", "pr_opened")}


def wanted(repo: Repo, state: str) -> bool:
    return bool(repo.slack_enabled and repo.slack_webhook_url_encrypted and state in (repo.slack_notify_on or []))


def on_event(event: Event) -> None:
    state = NOTIFIED.get(event.name)
    if state is None:
        return
    repo = _repo_of(event)
    if repo is None or not wanted(repo, state):
        return
    with transaction.atomic():
        notification, created = SlackNotification.objects.get_or_create(
            event=event, repo=repo, defaults={"next_attempt_at": timezone.now()}
        )
        # A row never tried since an earlier dispatch (its enqueue may have been lost with a
        # broker outage) is enqueued again; the delivery claim makes a duplicate harmless.
        # Rows already tried have their retry scheduled by the delivery task itself.
        if created or (notification.status == SlackNotification.Status.PENDING and notification.attempts == 0):
            transaction.on_commit(lambda: enqueue(notification.pk))


def _repo_of(event: Event) -> Repo | None:
    if event.task_id is not None:
        return Repo.objects.filter(tasks__pk=event.task_id).first()
    url = (event.data or {}).get("repoUrl")
    return Repo.objects.filter(url=url).first() if url else None


def enqueue(notification_id: int, countdown: float | None = None) -> None:
    from integrations.slack.tasks import deliver

    try:
        deliver.apply_async((notification_id,), countdown=countdown)
    except Exception:  # broker down: the slack sweep (beat) picks pending rows up again
        log.warning("could not enqueue Slack notification %s; the sweep will retry", notification_id, exc_info=True)
