"""What the PR watcher remembers: the last observation per task, inbound hook deliveries, write-backs."""

from __future__ import annotations

from django.db import models

from optio.models import Event, Task


class PullWatch(models.Model):
    """The last observation of a task's pull request, so the same observation never fires twice.

    `fingerprint` covers only what the transition rules read (verdict, head SHA, failing checks,
    outstanding change requests); `observed_at` is when the fetch behind it started, so an older
    fetch that finishes late cannot overwrite a newer one.
    """

    task = models.OneToOneField(Task, on_delete=models.CASCADE, primary_key=True, related_name="pull_watch")
    pr_url = models.URLField(max_length=500, help_text="The PR this observation is of; a new prUrl starts over")
    fingerprint = models.CharField(max_length=64, blank=True, default="")
    verdict = models.CharField(max_length=32, blank=True, default="")
    observed_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # Set after a rate limit: the poller leaves the task alone until then.
    next_check_after = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "watched pull request"

    def __str__(self) -> str:
        return self.pr_url


class InboundDelivery(models.Model):
    """One GitHub webhook delivery (`X-GitHub-Delivery`): the ledger that makes redeliveries no-ops."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        PROCESSED = "processed"
        IGNORED = "ignored"
        FAILED = "failed"

    delivery_id = models.CharField(max_length=100, unique=True)
    event = models.CharField(max_length=64)
    action = models.CharField(max_length=64, blank=True, default="")
    repo_full_name = models.CharField(max_length=200, blank=True, default="")
    # What the delivery is about (PR numbers, head SHA, issue number), not the whole payload.
    subject = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    detail = models.TextField(blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "inbound deliveries"

    def __str__(self) -> str:
        return f"{self.event}.{self.action} {self.delivery_id}" if self.action else f"{self.event} {self.delivery_id}"


class Writeback(models.Model):
    """One thing to tell a ticket (a comment, a state change), recorded by the event subscriber.

    `key` is unique: a re-dispatched event, or a second `task.pr_opened` for the same PR,
    records nothing new and sends nothing twice. `payload` is the content as of the event.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"
        SKIPPED = "skipped"

    key = models.CharField(max_length=300, unique=True)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="writebacks")
    event = models.ForeignKey(Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    target = models.CharField(max_length=16)  # github, linear
    action = models.CharField(max_length=32)  # pr_link, started, completed, failed
    payload = models.JSONField(default=dict, blank=True)
    steps_done = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    detail = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.target} {self.action} for {self.task_id}"
