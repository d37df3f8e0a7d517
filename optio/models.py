"""The core domain: repositories, secrets, tasks, their logs and events, API tokens."""

from __future__ import annotations

import hashlib
import secrets as pysecrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from optio.repo_urls import normalize_repo_url

SLACK_NOTIFY_CHOICES = ("completed", "failed", "needs_attention", "pr_opened")


def _all_slack_events() -> list[str]:
    return list(SLACK_NOTIFY_CHOICES)


class RepoQuerySet(models.QuerySet):
    def get_by_url(self, url: str) -> Repo:
        return self.get(url=normalize_repo_url(url))

    def filter_url(self, url: str) -> RepoQuerySet:
        return self.filter(url=normalize_repo_url(url))


class Repo(models.Model):
    url = models.CharField(max_length=300, unique=True, help_text="Normalised: https://host/owner/name")
    default_branch = models.CharField(max_length=200, default="main")
    # Write-back to the source ticket (labels, comments) — on by default, per repository.
    writeback_enabled = models.BooleanField(default=True)
    slack_enabled = models.BooleanField(default=False)
    slack_webhook_url_encrypted = models.TextField(blank=True, default="")
    slack_notify_on = models.JSONField(default=_all_slack_events)
    slack_last_error = models.TextField(blank=True, default="")
    slack_last_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RepoQuerySet.as_manager()

    class Meta:
        ordering = ["url"]

    def __str__(self) -> str:
        return self.url

    def save(self, *args, **kwargs):
        self.url = normalize_repo_url(self.url)
        super().save(*args, **kwargs)

    @property
    def host(self) -> str:
        return self.url.split("/")[2]

    @property
    def full_name(self) -> str:
        """`owner/name`."""
        return "/".join(self.url.split("/")[3:5])

    @property
    def owner(self) -> str:
        return self.full_name.split("/")[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/")[1]


class Secret(models.Model):
    """A named credential. `value_encrypted` is a Fernet token; plaintext never reaches the database."""

    name = models.CharField(max_length=128)
    repo = models.ForeignKey(Repo, null=True, blank=True, on_delete=models.CASCADE, related_name="secrets")
    value_encrypted = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["name", "repo"], name="secret_unique_per_repo"),
            models.UniqueConstraint(fields=["name"], condition=Q(repo__isnull=True), name="secret_unique_global"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.scope})"

    @property
    def scope(self) -> str:
        return self.repo.url if self.repo_id else "global"


class TaskState(models.TextChoices):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    PR_OPENED = "pr_opened"
    NEEDS_ATTENTION = "needs_attention"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A ticket may have at most one task in these states (see Task.Meta.constraints).
ACTIVE_STATES = (
    TaskState.PENDING,
    TaskState.QUEUED,
    TaskState.RUNNING,
    TaskState.PR_OPENED,
    TaskState.NEEDS_ATTENTION,
)
FINAL_STATES = (TaskState.COMPLETED, TaskState.CANCELLED)


class Task(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=500)
    prompt = models.TextField()
    repo = models.ForeignKey(Repo, on_delete=models.PROTECT, related_name="tasks")
    state = models.CharField(max_length=20, choices=TaskState.choices, default=TaskState.PENDING, db_index=True)
    ticket_source = models.CharField(max_length=32, blank=True, default="")
    ticket_external_id = models.CharField(max_length=128, blank=True, default="")
    ticket_url = models.URLField(max_length=500, blank=True, default="")
    pr_url = models.URLField(max_length=500, blank=True, default="")
    cost_usd = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # Why a task needs attention (ci_failed, changes_requested, ...) and the PR's last known status.
    attention_reason = models.CharField(max_length=64, blank=True, default="")
    pr_status = models.JSONField(default=dict, blank=True)
    writeback_error = models.TextField(blank=True, default="")
    # Highest TaskLog.seq handed out; bumped atomically to reserve a block of sequence numbers.
    log_seq = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["repo", "ticket_source", "ticket_external_id"],
                condition=Q(state__in=ACTIVE_STATES) & ~Q(ticket_source=""),
                name="task_one_active_per_ticket",
            ),
        ]
        indexes = [models.Index(fields=["ticket_source", "ticket_external_id"])]

    def __str__(self) -> str:
        return self.title

    @property
    def page_url(self) -> str:
        return f"{settings.OPTIO_PUBLIC_URL}/tasks/{self.pk}/"


class TaskLog(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="logs")
    seq = models.BigIntegerField()
    timestamp = models.DateTimeField(default=timezone.now)
    stream = models.CharField(max_length=16, default="stdout")
    type = models.CharField(max_length=32, default="text")
    content = models.TextField(blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["task", "seq"]
        constraints = [models.UniqueConstraint(fields=["task", "seq"], name="tasklog_unique_seq")]

    def __str__(self) -> str:
        return f"{self.task_id}#{self.seq}"


def _event_public_id() -> str:
    return "evt_" + uuid.uuid4().hex


class Event(models.Model):
    """Outbox row: written in the transaction that changed the task; `seq` is the insert order.

    `stream_seq` is the order in which events were claimed for dispatch and is the `seq` of
    WebSocket frames: unlike `seq` it is handed out in commit order, so a client resuming
    after N can never miss a lower number committed later (see optio/dispatch.py).
    """

    seq = models.BigAutoField(primary_key=True)
    # Unique by a constraint (no LIKE-pattern index on PostgreSQL) and the task looked up through
    # event_task_stream: an event row is written three times (created, claimed, dispatched)
    # and each write pays for every index.
    public_id = models.CharField(max_length=40, default=_event_public_id)
    # Not indexed: nothing looks events up by name alone (a replay narrows them by created_at
    # first), and the index and its LIKE twin cost every write.
    name = models.CharField(max_length=64)
    task = models.ForeignKey(
        Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="events", db_index=False
    )
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Dispatch state (optio/dispatch.py): the frame order, the claim lease (also the retry
    # back-off), and which subscribers have already succeeded for this event.
    stream_seq = models.BigIntegerField(null=True, blank=True, unique=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    subscribers_done = models.JSONField(default=list, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["seq"]
        constraints = [models.UniqueConstraint(fields=["public_id"], name="event_public_id_unique")]
        indexes = [
            # The dispatcher takes waiting events in seq order: with this index it reads just the
            # batch it takes. On created_at, it read every waiting event to sort them (or walked
            # the whole table by primary key past every dispatched one, on a large backlog).
            models.Index(fields=["seq"], condition=Q(dispatched_at__isnull=True), name="event_waiting"),
            models.Index(fields=["task", "stream_seq"], name="event_task_stream"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.name}"

    def envelope(self) -> dict:
        """The wire shape shared by webhook bodies and /ws/events frames (DESIGN.md)."""
        return {
            "id": self.public_id,
            "event": self.name,
            "timestamp": self.created_at.isoformat().replace("+00:00", "Z"),
            "data": self.data,
        }


TOKEN_PREFIX = "optio_"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def issue(self, user, name: str = "", expires_at=None) -> tuple[ApiToken, str]:
        """Create a token; the raw value is returned once and never stored."""
        raw = TOKEN_PREFIX + pysecrets.token_urlsafe(32)
        token = self.create(user=user, name=name, key_hash=hash_token(raw), prefix=raw[:12], expires_at=expires_at)
        return token, raw


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, default="")
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16, help_text="The first characters, to tell tokens apart")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()
