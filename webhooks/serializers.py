"""camelCase JSON shapes of webhooks, deliveries and attempts. Secrets only ever go in."""

from __future__ import annotations

import json

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from optio import crypto
from webhooks import signing
from webhooks.models import Attempt, Delivery, DeliveryStatus, Webhook


class WebhookWriteSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2000, trim_whitespace=True)
    events = serializers.ListField(child=serializers.CharField(max_length=64), allow_empty=False, max_length=50)
    secret = serializers.CharField(max_length=512, trim_whitespace=False, write_only=True)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    active = serializers.BooleanField(required=False)


class WebhookHealthSerializer(serializers.Serializer):
    status = serializers.CharField(source="health", help_text="new, healthy, failing or disabled")
    lastSuccessAt = serializers.DateTimeField(source="last_success_at", allow_null=True)
    lastFailureAt = serializers.DateTimeField(source="last_failure_at", allow_null=True)
    failingSince = serializers.DateTimeField(source="failing_since", allow_null=True)
    lastError = serializers.CharField(source="last_error")
    disabledAt = serializers.DateTimeField(source="disabled_at", allow_null=True)
    disabledReason = serializers.CharField(source="disabled_reason")


class WebhookSerializer(serializers.ModelSerializer):
    secret = serializers.SerializerMethodField(help_text="Masked: secrets are write-only.")
    secretRotationEndsAt = serializers.SerializerMethodField(
        help_text="While set, the previous secret also signs (webhook-signature carries both)."
    )
    health = WebhookHealthSerializer(source="*", read_only=True)
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)

    class Meta:
        model = Webhook
        fields = [
            "id",
            "url",
            "description",
            "events",
            "active",
            "secret",
            "secretRotationEndsAt",
            "health",
            "createdAt",
            "updatedAt",
        ]

    def get_secret(self, obj) -> str:
        return signing.mask(crypto.decrypt(obj.secret_encrypted))

    def get_secretRotationEndsAt(self, obj) -> str | None:
        return serializers.DateTimeField().to_representation(obj.previous_secret_expires_at) if obj.rotating else None


class ReplayOfferSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    failedDeliveries = serializers.IntegerField()
    missedEvents = serializers.IntegerField()


class WebhookUpdateResultSerializer(WebhookSerializer):
    replayOffer = serializers.SerializerMethodField(
        help_text="Set when this update re-enabled a disabled endpoint: what it missed, for POST …/replay."
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "replayOffer"]

    @extend_schema_field(ReplayOfferSerializer(allow_null=True))
    def get_replayOffer(self, obj):
        offer = self.context.get("replay_offer")
        return ReplayOfferSerializer(offer).data if offer else None


class DeliverySerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", help_text="Also sent as the webhook-id header.")
    webhookId = serializers.IntegerField(source="webhook_id")
    eventId = serializers.CharField(source="event.public_id")
    event = serializers.CharField(source="event_name")
    statusCode = serializers.IntegerField(source="status_code", allow_null=True)
    attemptCount = serializers.IntegerField(source="attempt_count")
    nextAttemptAt = serializers.DateTimeField(source="next_attempt_at", allow_null=True)
    lastError = serializers.CharField(source="last_error")
    createdAt = serializers.DateTimeField(source="created_at")
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "webhookId",
            "eventId",
            "event",
            "status",
            "statusCode",
            "success",
            "attemptCount",
            "nextAttemptAt",
            "lastError",
            "createdAt",
            "finishedAt",
        ]


class AttemptSerializer(serializers.ModelSerializer):
    startedAt = serializers.DateTimeField(source="started_at")
    durationMs = serializers.IntegerField(source="duration_ms", allow_null=True)
    requestUrl = serializers.CharField(source="request_url")
    requestHeaders = serializers.DictField(source="request_headers", child=serializers.CharField())
    responseStatus = serializers.IntegerField(source="response_status", allow_null=True)
    responseHeaders = serializers.DictField(source="response_headers", child=serializers.CharField())
    responseBody = serializers.CharField(source="response_body")
    responseTruncated = serializers.BooleanField(source="response_truncated")
    errorClass = serializers.CharField(source="error_class")

    class Meta:
        model = Attempt
        fields = [
            "number",
            "trigger",
            "startedAt",
            "durationMs",
            "requestUrl",
            "requestHeaders",
            "responseStatus",
            "responseHeaders",
            "responseBody",
            "responseTruncated",
            "success",
            "errorClass",
            "error",
        ]


class DeliveryDetailSerializer(DeliverySerializer):
    payload = serializers.SerializerMethodField(help_text="The body sent on every attempt, parsed.")
    attempts = AttemptSerializer(many=True, read_only=True)

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "payload", "attempts"]

    def get_payload(self, obj) -> dict:
        return json.loads(obj.body)


class ReplaySerializer(serializers.Serializer):
    since = serializers.DateTimeField(help_text="Re-send what failed or was missed from this time on.")


class ReplayResultSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    failedDeliveries = serializers.IntegerField()
    missedEvents = serializers.IntegerField()
    truncated = serializers.BooleanField()


STATUSES = DeliveryStatus.values
