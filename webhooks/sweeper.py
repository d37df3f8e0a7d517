"""Beat jobs of outgoing webhooks: the sweeper (due deliveries without a drain in line, leases
that ran out) and retention."""

from __future__ import annotations

import math

from django.db.models import F, Q
from django.utils import timezone

from webhooks import conf, delivery
from webhooks.models import Attempt, Delivery, DeliveryStatus

PENDING, SENDING, SUCCESS, FAILED = (
    DeliveryStatus.PENDING,
    DeliveryStatus.SENDING,
    DeliveryStatus.SUCCESS,
    DeliveryStatus.FAILED,
)


def enqueue_due(limit: int = 1000) -> int:
    """Beat: queue drains for due deliveries that have no drain in line, and one attempt each for
    deliveries whose lease ran out (their worker died mid-request). Returns how many it queued for."""
    now = timezone.now()
    not_queued = Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=now - conf.sweep_grace())
    due = Q(status=PENDING, next_attempt_at__lte=now) & (not_queued | Q(enqueued_at__lt=F("next_attempt_at")))
    expired = Q(status=SENDING, claimed_until__lt=now) & (not_queued | Q(enqueued_at__lt=F("claimed_until")))
    due_ids = list(Delivery.objects.filter(due).order_by("pk").values_list("pk", flat=True)[:limit])
    expired_ids = list(Delivery.objects.filter(expired).order_by("pk").values_list("pk", flat=True)[:limit])
    if not due_ids and not expired_ids:
        return 0
    Delivery.objects.filter(pk__in=due_ids + expired_ids).update(enqueued_at=now)
    if due_ids:
        delivery.enqueue_drains(math.ceil(len(due_ids) / conf.batch_size()))
    if expired_ids:
        delivery.enqueue_ids(expired_ids)  # one by one: the takeover records the lost attempt first
    return len(due_ids) + len(expired_ids)


def purge_old(max_batches: int = 200) -> int:
    """Beat: delete attempts and finished deliveries older than the retention, in small batches
    so no single statement holds locks for long."""
    cutoff = timezone.now() - conf.retention()
    batch = conf.purge_batch()
    deleted = 0
    for _ in range(max_batches):
        ids = list(Attempt.objects.filter(started_at__lt=cutoff).values_list("pk", flat=True)[:batch])
        if not ids:
            break
        deleted += Attempt.objects.filter(pk__in=ids).delete()[0]
    for _ in range(max_batches):
        ids = list(
            Delivery.objects.filter(status__in=[SUCCESS, FAILED], finished_at__lt=cutoff).values_list("pk", flat=True)[
                :batch
            ]
        )
        if not ids:
            break
        deleted += Delivery.objects.filter(pk__in=ids).delete()[0]
    return deleted
