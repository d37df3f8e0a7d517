"""Outgoing webhooks: an endpoint (Webhook), one Delivery per (event, webhook), one Attempt per HTTP request."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils import timezone

from optio import crypto, events


class Webhook(models.Model):
    url = models.CharField(max_length=2000)
    description = models.CharField(max_length=500, blank=True, default="")
    # Subscriptions: event names, "*" for everything, or "task.*"-style prefixes.
    events = models.JSONField(default=list)
    secret_encrypted = models.TextField()
    # During a rotation the previous secret keeps signing alongside the new one until it expires.
    previous_secret_encrypted = models.TextField(blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.TextField(blank=True, default="")
    # Health. failing_since: the first failure after the last success (None while healthy).
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "webhooks"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.url

    def subscribes_to(self, name: str) -> bool:
        return any(pattern_matches(p, name) for p in self.events)

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The current secret, then the previous one while its rotation grace lasts."""
        secrets = [crypto.decrypt(self.secret_encrypted)]
        now = now or timezone.now()
        if self.previous_secret_encrypted and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            secrets.append(crypto.decrypt(self.previous_secret_encrypted))
        return secrets

    @property
    def rotating(self) -> bool:
        return bool(
            self.previous_secret_encrypted
            and self.previous_secret_expires_at
            and self.previous_secret_expires_at > timezone.now()
        )

    @property
    def health(self) -> str:
        if not self.active:
            return "disabled"
        if self.failing_since:
            return "failing"
        if self.last_success_at:
            return "healthy"
        return "new"


def pattern_matches(pattern: str, name: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return name.startswith(pattern[:-1])
    return pattern == name


def valid_pattern(pattern: str) -> bool:
    """A pattern is valid if it names, or matches, at least one task event."""
    return isinstance(pattern, str) and any(pattern_matches(pattern, e) for e in events.TASK_EVENTS)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SENDING = "sending"
    SUCCESS = "success"
    FAILED = "failed"


def _message_id() -> str:
    return "msg_" + uuid.uuid4().hex


def message_id(event_public_id: str, webhook_id: int) -> str:
    """The webhook-id of the delivery of one event to one endpoint. Derived, not random, so a
    delivery re-created after a database crash keeps the id receivers deduplicate on."""
    return "msg_" + hashlib.sha256(f"{event_public_id}:{webhook_id}".encode()).hexdigest()[:32]


class Delivery(models.Model):
    # The Standard Webhooks `webhook-id`: stable across retries and redeliveries.
    # Unique by a constraint, not `unique=True`: on PostgreSQL that would add a second,
    # LIKE-pattern index nothing uses. The foreign keys are indexed by delivery_by_webhook and
    # the (event, webhook) constraint. Every index costs each write of a delivery, and a
    # delivery is written three times (created, claimed, settled): 8 index entries each
    # before, 5 now (bench_webhooks).
    public_id = models.CharField(max_length=40, default=_message_id)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    event = models.ForeignKey(
        "optio.Event", on_delete=models.CASCADE, related_name="webhook_deliveries", db_index=False
    )
    event_name = models.CharField(max_length=64)
    # The envelope serialised once, at creation: every attempt sends exactly these bytes (UTF-8).
    body = models.TextField()
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    success = models.BooleanField(default=False)
    attempt_count = models.PositiveIntegerField(default=0)
    # Attempts that used a step of the retry schedule (manual redeliveries do not).
    scheduled_attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    # When a message for the current attempt was last put on the queue; the sweeper uses it to
    # tell "waiting in line" from "no message at all" without sending duplicates.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "webhook_deliveries"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "webhook"], name="delivery_one_per_event_webhook"),
            models.UniqueConstraint(fields=["public_id"], name="delivery_public_id_unique"),
        ]
        indexes = [
            models.Index(fields=["webhook", "-id"], name="delivery_by_webhook"),
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="delivery_due"),
            models.Index(fields=["claimed_until"], condition=Q(status="sending"), name="delivery_leased"),
            models.Index(fields=["finished_at"], condition=Q(status__in=["success", "failed"]), name="delivery_done"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.event_name} → {self.webhook_id}"

    @property
    def body_bytes(self) -> bytes:
        return self.body.encode()


class AttemptTrigger(models.TextChoices):
    SCHEDULED = "scheduled"
    MANUAL = "manual"


class Attempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    trigger = models.CharField(max_length=16, choices=AttemptTrigger.choices, default=AttemptTrigger.SCHEDULED)
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    request_url = models.CharField(max_length=2000)
    # What was sent, with signatures redacted; the body is the delivery's.
    request_headers = models.JSONField(default=dict)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict)
    response_body = models.TextField(blank=True, default="")  # at most 64 KiB
    response_truncated = models.BooleanField(default=False)
    success = models.BooleanField(default=False)
    # timeout, connect_error, blocked, invalid_url, payload_too_large, http_status, redirect, gone, worker_lost
    error_class = models.CharField(max_length=32, blank=True, default="")
    error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "webhook_attempts"
        ordering = ["delivery", "number"]
        indexes = [models.Index(fields=["started_at"], name="attempt_started")]

    def __str__(self) -> str:
        return f"{self.delivery_id}#{self.number}"
