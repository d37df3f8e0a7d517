"""One row per (event, repository) Slack message: the idempotency key and the delivery record."""

from __future__ import annotations

from django.db import models

from optio.models import Event, Repo


class SlackNotification(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"  # waiting for (another) attempt
        SENDING = "sending"  # claimed by a worker; `claimed_until` bounds a dead worker's claim
        SENT = "sent"
        FAILED = "failed"  # permanent Slack error or retries exhausted
        SKIPPED = "skipped"  # Slack was turned off (or the URL removed) before it could be sent

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")
    repo = models.ForeignKey(Repo, on_delete=models.CASCADE, related_name="slack_notifications")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["event", "repo"], name="slack_one_message_per_event_repo")]

    def __str__(self) -> str:
        return f"Slack {self.event_id} → {self.repo_id} ({self.status})"
