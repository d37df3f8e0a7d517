"""REST API of outgoing webhooks: endpoints, their deliveries and attempts, test, redeliver, replay."""

from __future__ import annotations

from datetime import timedelta

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from kombu.exceptions import OperationalError
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from optio.api.errors import ApiError
from webhooks import conf, endpoints
from webhooks import serializers as s
from webhooks.models import Delivery, Webhook


def _invalid(exc: endpoints.InvalidWebhook) -> ApiError:
    return ApiError(exc.message, status.HTTP_400_BAD_REQUEST, {exc.field: [exc.message]})


def _queue_failed(exc: Exception) -> ApiError:
    return ApiError(
        "The delivery could not be queued because the task queue is unavailable; try again in a moment.",
        status.HTTP_503_SERVICE_UNAVAILABLE,
        {"cause": exc.__class__.__name__},
    )


class WebhookList(generics.ListAPIView):
    queryset = Webhook.objects.all()
    serializer_class = s.WebhookSerializer

    @extend_schema(request=s.WebhookWriteSerializer, responses={201: s.WebhookSerializer})
    def post(self, request):
        data = s.WebhookWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            webhook = endpoints.create(**data.validated_data)
        except endpoints.InvalidWebhook as exc:
            raise _invalid(exc) from None
        return Response(s.WebhookSerializer(webhook).data, status=status.HTTP_201_CREATED)


class WebhookDetail(generics.RetrieveDestroyAPIView):
    queryset = Webhook.objects.all()
    serializer_class = s.WebhookSerializer

    @extend_schema(request=s.WebhookWriteSerializer(partial=True), responses={200: s.WebhookUpdateResultSerializer})
    def patch(self, request, pk):
        webhook = self.get_object()
        data = s.WebhookWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        try:
            webhook, offer = endpoints.update(webhook, **data.validated_data)
        except endpoints.InvalidWebhook as exc:
            raise _invalid(exc) from None
        return Response(s.WebhookUpdateResultSerializer(webhook, context={"replay_offer": offer}).data)

    def perform_destroy(self, instance):
        endpoints.delete(instance)


class WebhookDeliveries(generics.ListAPIView):
    serializer_class = s.DeliverySerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=s.STATUSES),
            OpenApiParameter("event", str, description="An event name, e.g. task.completed"),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        webhook = get_object_or_404(Webhook, pk=self.kwargs["pk"])
        qs = Delivery.objects.filter(webhook=webhook).select_related("event").order_by("-pk")
        params = self.request.query_params
        if wanted := params.get("status"):
            if wanted not in s.STATUSES:
                raise ApiError(
                    f'"{wanted}" is not a delivery status; use one of: {", ".join(s.STATUSES)}.',
                    details={"status": [f"not one of {', '.join(s.STATUSES)}"]},
                )
            qs = qs.filter(status=wanted)
        if event := params.get("event"):
            qs = qs.filter(event_name=event)
        return qs


class WebhookTest(APIView):
    @extend_schema(request=None, responses={202: s.DeliverySerializer})
    def post(self, request, pk):
        webhook = get_object_or_404(Webhook, pk=pk)
        delivery = endpoints.send_test(webhook)
        delivery.refresh_from_db()  # in eager mode (embedded, tests) it may already be sent
        return Response(s.DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class WebhookReplay(APIView):
    @extend_schema(request=s.ReplaySerializer, responses={202: s.ReplayResultSerializer})
    def post(self, request, pk):
        webhook = get_object_or_404(Webhook, pk=pk)
        data = s.ReplaySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        since = data.validated_data["since"]
        oldest = timezone.now() - conf.retention()
        if since < oldest - timedelta(minutes=1):
            raise ApiError(
                f"since must be within the last {conf.retention().days} days; older deliveries are no longer kept.",
                details={"since": ["older than the retention"]},
            )
        try:
            result = endpoints.replay(webhook, since)
        except endpoints.Busy as exc:
            raise ApiError(str(exc), status.HTTP_409_CONFLICT) from None
        except OperationalError as exc:
            raise _queue_failed(exc) from None
        return Response(s.ReplayResultSerializer(result).data, status=status.HTTP_202_ACCEPTED)


def _delivery(delivery_id: str) -> Delivery:
    return get_object_or_404(
        Delivery.objects.select_related("event", "webhook").prefetch_related("attempts"), public_id=delivery_id
    )


class DeliveryDetail(APIView):
    @extend_schema(responses={200: s.DeliveryDetailSerializer})
    def get(self, request, delivery_id):
        return Response(s.DeliveryDetailSerializer(_delivery(delivery_id)).data)


class DeliveryRedeliver(APIView):
    @extend_schema(request=None, responses={202: s.DeliverySerializer})
    def post(self, request, delivery_id):
        delivery = _delivery(delivery_id)
        try:
            endpoints.redeliver(delivery)
        except endpoints.Busy as exc:
            raise ApiError(str(exc), status.HTTP_409_CONFLICT) from None
        except OperationalError as exc:
            raise _queue_failed(exc) from None
        delivery.refresh_from_db()
        return Response(s.DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
