"""REST API of ticket providers: CRUD, preview and "sync now". Credentials are write-only."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from optio.api.errors import ApiError
from tickets import services, sync, tasks
from tickets.models import TicketProvider
from tickets.providers import REGISTRY, get_source
from tickets.providers.base import ConfigError, SourceError


class ProviderSerializer(serializers.ModelSerializer):
    """What a provider looks like in every response; no credential value ever appears here."""

    sourceLabel = serializers.SerializerMethodField()
    scope = serializers.SerializerMethodField()
    credentials = serializers.SerializerMethodField(help_text="Names of the stored credentials (values are write-only)")
    syncing = serializers.BooleanField(read_only=True)
    lastSyncStartedAt = serializers.DateTimeField(source="last_sync_started_at", read_only=True)
    lastSyncAt = serializers.DateTimeField(source="last_sync_at", read_only=True)
    lastSyncStats = serializers.JSONField(source="last_sync_stats", read_only=True)
    lastError = serializers.SerializerMethodField()
    lastErrorKind = serializers.SerializerMethodField()
    lastErrorAt = serializers.DateTimeField(source="last_error_at", read_only=True)
    consecutiveFailures = serializers.IntegerField(source="consecutive_failures", read_only=True)
    disabledReason = serializers.SerializerMethodField()
    nextSyncAfter = serializers.DateTimeField(source="next_sync_after", read_only=True)
    skippedTickets = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)

    class Meta:
        model = TicketProvider
        fields = [
            "id", "source", "sourceLabel", "scope", "config", "credentials", "enabled", "syncing",
            "lastSyncStartedAt", "lastSyncAt", "lastSyncStats", "lastError", "lastErrorKind", "lastErrorAt",
            "consecutiveFailures", "disabledReason", "nextSyncAfter", "skippedTickets", "createdAt", "updatedAt",
        ]  # fmt: skip
        read_only_fields = fields

    def get_sourceLabel(self, obj) -> str:
        return get_source(obj.source).label

    def get_scope(self, obj) -> str:
        return get_source(obj.source).describe(obj.config)

    def get_credentials(self, obj) -> list[str]:
        try:
            return obj.credential_names
        except ValueError:  # undecryptable after a key change: say nothing is usable
            return []

    def get_lastError(self, obj) -> str | None:
        return obj.last_error or None

    def get_lastErrorKind(self, obj) -> str | None:
        return obj.last_error_kind or None

    def get_disabledReason(self, obj) -> str | None:
        return obj.disabled_reason or None

    def get_skippedTickets(self, obj) -> list[dict]:
        items = sorted((obj.skipped or {}).items(), key=lambda kv: kv[1].get("at", ""), reverse=True)
        return [{"externalId": key, **value} for key, value in items]


class ProviderCreateSerializer(serializers.Serializer):
    source = serializers.ChoiceField(
        choices=sorted(REGISTRY), error_messages={"invalid_choice": '"{input}" is not a ticket source.'}
    )
    config = serializers.JSONField(
        help_text="GitHub: repos, labels, assignee, token (optional). Linear: apiKey, teamId, projectId, labels, repoUrl."
    )
    enabled = serializers.BooleanField(required=False, default=True)


class ProviderUpdateSerializer(serializers.Serializer):
    config = serializers.JSONField(required=False, help_text="Merged into the stored config (JSON Merge Patch)")
    enabled = serializers.BooleanField(required=False)
    source = serializers.CharField(required=False)


def _config_error(exc: ConfigError) -> ApiError:
    return ApiError(str(exc), status.HTTP_400_BAD_REQUEST, {"config": exc.details} if exc.details else {})


def _saved_json(saved: services.Saved) -> dict:
    return dict(ProviderSerializer(saved.provider).data, connectedRepos=saved.connected)


class ProviderList(generics.ListAPIView):
    queryset = TicketProvider.objects.all()
    serializer_class = ProviderSerializer

    @extend_schema(request=ProviderCreateSerializer, responses={201: ProviderSerializer})
    def post(self, request):
        data = ProviderCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            saved = services.create_provider(v["source"], v["config"], enabled=v["enabled"])
        except ConfigError as exc:
            raise _config_error(exc) from None
        return Response(_saved_json(saved), status=status.HTTP_201_CREATED)


class ProviderDetail(generics.RetrieveDestroyAPIView):
    queryset = TicketProvider.objects.all()
    serializer_class = ProviderSerializer

    @extend_schema(request=ProviderUpdateSerializer, responses={200: ProviderSerializer})
    def patch(self, request, pk):
        provider = self.get_object()
        data = ProviderUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        if "source" in v and v["source"] != provider.source:
            raise ApiError(
                "A provider's source cannot change; create a new provider for the other source and delete this one.",
                details={"source": ["Cannot be changed."]},
            )
        try:
            saved = services.update_provider(provider, config=v.get("config"), enabled=v.get("enabled"))
        except ConfigError as exc:
            raise _config_error(exc) from None
        return Response(_saved_json(saved))

    def perform_destroy(self, instance):
        services.delete_provider(instance)


class PreviewTicket(serializers.Serializer):
    externalId = serializers.CharField()
    title = serializers.CharField()
    url = serializers.CharField()
    repoUrl = serializers.CharField(allow_null=True)
    action = serializers.ChoiceField(choices=["create", "exists", "skip"])
    reason = serializers.CharField()
    task = serializers.DictField(allow_null=True)


class ProviderPreview(APIView):
    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "ProviderPreview",
                {
                    "providerId": serializers.IntegerField(),
                    "count": serializers.IntegerField(),
                    "wouldCreate": serializers.IntegerField(),
                    "truncated": serializers.BooleanField(),
                    "requests": serializers.IntegerField(),
                    "tickets": PreviewTicket(many=True),
                },
            )
        },
    )
    def post(self, request, pk):
        provider = get_object_or_404(TicketProvider, pk=pk)
        try:
            result = sync.preview(provider)
        except SourceError as exc:
            raise ApiError(str(exc), status.HTTP_502_BAD_GATEWAY, {"kind": exc.kind}) from None
        return Response(
            {
                "providerId": provider.pk,
                "count": len(result.tickets),
                "wouldCreate": sum(1 for t in result.tickets if t["action"] == "create"),
                "truncated": result.truncated,
                "requests": result.requests,
                "tickets": result.tickets,
            }
        )


class SyncRequestSerializer(serializers.Serializer):
    providerId = serializers.IntegerField(required=False, min_value=1)


class SyncNow(APIView):
    @extend_schema(
        request=SyncRequestSerializer,
        responses={
            202: inline_serializer("SyncQueued", {"queued": serializers.ListField(child=serializers.IntegerField())})
        },
    )
    def post(self, request):
        data = SyncRequestSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        provider_id = data.validated_data.get("providerId")
        if provider_id is not None:
            provider = TicketProvider.objects.filter(pk=provider_id).first()
            if provider is None:
                raise ApiError(f"There is no ticket provider {provider_id}.", status.HTTP_404_NOT_FOUND)
            if not provider.enabled:
                raise ApiError(
                    f"Ticket provider {provider_id} is disabled; enable it first "
                    f'(PATCH /api/tickets/providers/{provider_id} {{"enabled": true}}).',
                    status.HTTP_409_CONFLICT,
                    {"disabledReason": provider.disabled_reason or None},
                )
            ids = [provider_id]
        else:
            ids = list(TicketProvider.objects.filter(enabled=True).values_list("pk", flat=True))
        for pk in ids:
            tasks.enqueue(pk)
        return Response({"queued": ids}, status=status.HTTP_202_ACCEPTED)
