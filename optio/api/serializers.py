"""camelCase JSON shapes of the core models (DESIGN.md, API conventions)."""

from __future__ import annotations

from urllib.parse import urlsplit

from rest_framework import serializers

from optio import crypto
from optio.lifecycle import TRANSITIONS
from optio.models import SLACK_NOTIFY_CHOICES, Repo, Secret, Task, TaskLog, TaskState
from optio.repo_urls import InvalidRepoUrl, normalize_repo_url


class RepoUrlField(serializers.CharField):
    """A repository URL, normalised; invalid spellings are a 400 naming the expected form."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            return normalize_repo_url(value)
        except InvalidRepoUrl as exc:
            raise serializers.ValidationError(str(exc)) from None


def connected_repo(url: str) -> Repo:
    repo = Repo.objects.filter(url=url).first()
    if repo is None:
        raise serializers.ValidationError(
            f"{url} is not a connected repository; connect it first with POST /api/repos or in Settings → Repositories."
        )
    return repo


def connected_repo_or_400(url: str) -> Repo:
    try:
        return connected_repo(url)
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({"repoUrl": exc.detail}) from None


def mask_url(url: str) -> str:
    """A secret-bearing URL shown safely: `https://hooks.slack.com/services/T0…/…`.

    Scheme and host stay (so a person can tell which service it is); of the path only a
    leading `services` segment and two characters of the next survive.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return "…"
    if parts.scheme not in ("http", "https") or not netloc:
        return "…"
    segments = [s for s in parts.path.split("/") if s]
    shown = []
    if segments and segments[0] == "services":
        shown.append("services")
        segments = segments[1:]
    if segments:
        shown.append(segments[0][:2] + "…")
        if len(segments) > 1:
            shown.append("…")
    return f"{parts.scheme}://{netloc}/" + "/".join(shown)


class SlackWebhookUrlField(serializers.CharField):
    """Write-only in substance: accepts a URL, stores it encrypted, reads back only `mask_url()`.

    An empty string removes the stored URL.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault(
            "help_text", "Write-only: responses show a masked form such as https://hooks.slack.com/services/T0…/…"
        )
        super().__init__(source="slack_webhook_url_encrypted", required=False, allow_blank=True, allow_null=True,
                         max_length=2000, **kwargs)  # fmt: skip

    def to_internal_value(self, data):
        value = (super().to_internal_value(data) or "").strip()
        if not value:
            return ""
        # The outbound HTTP module owns what counts as a reachable, non-private destination.
        from integrations import http

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise serializers.ValidationError(
                "The Slack webhook URL must start with https:// (Slack shows it as https://hooks.slack.com/services/…)."
            )
        try:
            http.check_url(value)
        except http.OutboundError as exc:
            reason = exc.reason.replace(repr(value), repr(mask_url(value))).replace(value, mask_url(value))
            raise serializers.ValidationError(reason) from None
        return crypto.encrypt(value)

    def to_representation(self, value):
        if not value:
            return None
        try:
            return mask_url(crypto.decrypt(value))
        except ValueError:
            return "… (cannot be decrypted with the configured OPTIO_SECRET_KEYS; set it again)"


class SlackNotifyOnField(serializers.ListField):
    child = serializers.CharField()

    def to_internal_value(self, data):
        values = super().to_internal_value(data)
        unknown = [v for v in values if v not in SLACK_NOTIFY_CHOICES]
        if unknown:
            raise serializers.ValidationError(
                f'"{unknown[0]}" is not a Slack notification event; use any of: {", ".join(SLACK_NOTIFY_CHOICES)}.'
            )
        return [c for c in SLACK_NOTIFY_CHOICES if c in values]  # canonical order, no duplicates


class RepoSerializer(serializers.ModelSerializer):
    repoUrl = RepoUrlField(source="url", max_length=300)
    fullName = serializers.CharField(source="full_name", read_only=True)
    defaultBranch = serializers.CharField(source="default_branch", required=False, max_length=200)
    writebackEnabled = serializers.BooleanField(source="writeback_enabled", required=False)
    slackEnabled = serializers.BooleanField(source="slack_enabled", required=False)
    slackWebhookUrl = SlackWebhookUrlField()
    slackNotifyOn = SlackNotifyOnField(source="slack_notify_on", required=False, allow_empty=True, max_length=10)
    slackLastError = serializers.CharField(source="slack_last_error", read_only=True)
    slackLastErrorAt = serializers.DateTimeField(source="slack_last_error_at", read_only=True, allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)

    class Meta:
        model = Repo
        fields = [
            "id", "repoUrl", "fullName", "defaultBranch", "writebackEnabled", "slackEnabled", "slackWebhookUrl",
            "slackNotifyOn", "slackLastError", "slackLastErrorAt", "createdAt", "updatedAt",
        ]  # fmt: skip
        # Uniqueness is answered with a 409 by the view, not a generic 400.
        extra_kwargs = {"repoUrl": {"validators": []}}

    def validate(self, attrs):
        attrs = super().validate(attrs)
        stored = self.instance.slack_webhook_url_encrypted if self.instance else ""
        url = attrs.get("slack_webhook_url_encrypted", stored)
        enabled = attrs.get("slack_enabled", self.instance.slack_enabled if self.instance else False)
        if enabled and not url:
            raise serializers.ValidationError(
                {
                    "slackWebhookUrl": [
                        "Set slackWebhookUrl (a Slack incoming-webhook URL) to enable Slack notifications."
                    ]
                }
            )
        if "slack_webhook_url_encrypted" in attrs:
            attrs["slack_webhook_url_encrypted"] = attrs["slack_webhook_url_encrypted"] or ""  # null removes it too
            # A new (or removed) URL starts clean: the last error belonged to the old one.
            attrs["slack_last_error"] = ""
            attrs["slack_last_error_at"] = None
        return attrs


class RepoUpdateSerializer(RepoSerializer):
    repoUrl = serializers.CharField(source="url", read_only=True)


class SecretSerializer(serializers.ModelSerializer):
    scope = serializers.CharField(read_only=True)
    repoUrl = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)

    class Meta:
        model = Secret
        fields = ["id", "name", "scope", "repoUrl", "createdAt", "updatedAt"]

    def get_repoUrl(self, obj) -> str | None:
        return obj.repo.url if obj.repo_id else None


class SecretWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128)
    value = serializers.CharField(max_length=65536, trim_whitespace=False, write_only=True)
    repoUrl = RepoUrlField(required=False, allow_null=True)


class MoneyField(serializers.DecimalField):
    """A decimal string with at least two places ("0.35", "1.00", "0.1234"): the same text as
    `costUsd` in event envelopes, so the API and webhooks never disagree about a cost."""

    def to_representation(self, value):
        if value is None:
            return None
        whole, _, frac = format(value.normalize(), "f").partition(".")
        return f"{whole}.{frac.ljust(2, '0')}"


class TaskSerializer(serializers.ModelSerializer):
    repoId = serializers.IntegerField(source="repo_id", read_only=True)
    repoUrl = serializers.CharField(source="repo.url", read_only=True)
    ticketSource = serializers.CharField(source="ticket_source", read_only=True)
    ticketExternalId = serializers.CharField(source="ticket_external_id", read_only=True)
    ticketUrl = serializers.CharField(source="ticket_url", read_only=True)
    prUrl = serializers.CharField(source="pr_url", read_only=True)
    costUsd = MoneyField(source="cost_usd", max_digits=12, decimal_places=4, read_only=True, allow_null=True)
    attentionReason = serializers.CharField(source="attention_reason", read_only=True)
    prStatus = serializers.JSONField(source="pr_status", read_only=True)
    writebackError = serializers.CharField(source="writeback_error", read_only=True)
    allowedTransitions = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)
    startedAt = serializers.DateTimeField(source="started_at", read_only=True, allow_null=True)
    finishedAt = serializers.DateTimeField(source="finished_at", read_only=True, allow_null=True)

    class Meta:
        model = Task
        fields = [
            "id", "title", "prompt", "repoId", "repoUrl", "state", "ticketSource", "ticketExternalId",
            "ticketUrl", "prUrl", "costUsd", "error", "attentionReason", "prStatus", "writebackError",
            "allowedTransitions", "createdAt", "updatedAt", "startedAt", "finishedAt",
        ]  # fmt: skip
        read_only_fields = fields

    def get_allowedTransitions(self, obj) -> list[str]:
        return sorted(TRANSITIONS.get(obj.state, ()))


class TaskCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=500)
    prompt = serializers.CharField(max_length=200_000)
    repoUrl = RepoUrlField()

    def validate_repoUrl(self, value):
        return connected_repo(value)


class TransitionSerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=TaskState.values, error_messages={"invalid_choice": '"{input}" is not a task state.'}
    )
    prUrl = serializers.URLField(required=False, max_length=500)
    costUsd = serializers.DecimalField(required=False, max_digits=12, decimal_places=4, min_value=0, allow_null=True)
    error = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=64)


class TaskLogSerializer(serializers.ModelSerializer):
    taskId = serializers.UUIDField(source="task_id", read_only=True)

    class Meta:
        model = TaskLog
        fields = ["seq", "taskId", "timestamp", "stream", "type", "content", "metadata"]
