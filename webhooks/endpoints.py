"""Endpoint services: the only code that writes Webhook rows, plus the person-driven actions
on them (send a test, re-send one delivery, replay what an endpoint missed)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from integrations import http
from optio import crypto, events
from optio.models import Event
from webhooks import conf, delivery, signing
from webhooks.models import Delivery, DeliveryStatus, Webhook, valid_pattern

REPLAY_LIMIT = 10_000


class InvalidWebhook(ValueError):
    """Bad input for a webhook; `field` names what to fix."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(message)


class Busy(Exception):
    pass


def clean_url(url: str) -> str:
    url = (url or "").strip()
    try:
        http.check_url(url)
    except http.OutboundError as exc:
        raise InvalidWebhook("url", exc.reason) from None
    return url


def clean_events(patterns) -> list[str]:
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list | tuple) or not patterns:
        raise InvalidWebhook(
            "events", 'Choose at least one event, e.g. ["task.completed", "task.failed"], "task.*" or "*".'
        )
    cleaned: list[str] = []
    for pattern in patterns:
        pattern = pattern.strip() if isinstance(pattern, str) else pattern
        if not valid_pattern(pattern):
            raise InvalidWebhook(
                "events",
                f"{pattern!r} is not an event Optio sends; use one of {', '.join(events.TASK_EVENTS)}, "
                '"task.*" or "*".',
            )
        if pattern not in cleaned:
            cleaned.append(pattern)
    return cleaned


def clean_secret(secret: str) -> str:
    try:
        return signing.validate_secret(secret)
    except signing.InvalidSecret as exc:
        raise InvalidWebhook("secret", str(exc)) from None


def create(*, url: str, events: list[str], secret: str, description: str = "", active: bool = True) -> Webhook:
    return Webhook.objects.create(
        url=clean_url(url),
        events=clean_events(events),
        secret_encrypted=crypto.encrypt(clean_secret(secret)),
        description=description or "",
        active=active,
        disabled_at=None if active else timezone.now(),
        disabled_reason="" if active else "Created disabled.",
    )


@transaction.atomic
def update(webhook: Webhook, **changes) -> tuple[Webhook, dict | None]:
    """Apply a partial update. Returns (webhook, replay offer): re-enabling a disabled endpoint
    offers a replay of what it missed (see `replay_offer`)."""
    webhook = Webhook.objects.select_for_update().get(pk=webhook.pk)
    now = timezone.now()
    offer = None
    if "url" in changes:
        webhook.url = clean_url(changes["url"])
    if "events" in changes:
        webhook.events = clean_events(changes["events"])
    if "description" in changes:
        webhook.description = changes["description"] or ""
    if "secret" in changes:
        new = clean_secret(changes["secret"])
        if new != crypto.decrypt(webhook.secret_encrypted):
            # Rotation: the old secret keeps signing alongside the new one for a while, so a
            # receiver can switch without dropping a single delivery.
            webhook.previous_secret_encrypted = webhook.secret_encrypted
            webhook.previous_secret_expires_at = now + conf.ROTATION_GRACE
            webhook.secret_encrypted = crypto.encrypt(new)
    if "active" in changes and bool(changes["active"]) != webhook.active:
        if changes["active"]:
            since = missed_since(webhook)
            webhook.active, webhook.disabled_at, webhook.disabled_reason = True, None, ""
            webhook.failing_since = None
            if since is not None:
                offer = replay_offer(webhook, since)
        else:
            webhook.active, webhook.disabled_at = False, now
            webhook.disabled_reason = f"Disabled by hand on {now:%Y-%m-%d %H:%M} UTC."
    webhook.save()
    return webhook, offer


def delete(webhook: Webhook) -> None:
    webhook.delete()


# --- what a disabled endpoint missed ------------------------------------------------------


def missed_since(webhook: Webhook) -> datetime | None:
    """Where a replay should start for a disabled endpoint: when it began failing, or when it was disabled."""
    candidates = [t for t in (webhook.failing_since, webhook.disabled_at) if t is not None]
    if not candidates:
        return None
    start = min(candidates)
    # A delivery that failed in that period may have been created before it (retries take hours).
    first = (
        Delivery.objects.filter(webhook=webhook, status=DeliveryStatus.FAILED, finished_at__gte=start)
        .aggregate(first=Min("created_at"))
        .get("first")
    )
    return min(start, first) if first else start


def _subscribed(webhook: Webhook) -> Q:
    q = Q(pk__in=[])
    for pattern in webhook.events:
        if pattern == "*":
            return ~Q(name=conf.TEST_EVENT)
        q |= Q(name__startswith=pattern[:-1]) if pattern.endswith(".*") else Q(name=pattern)
    return q


def _failed(webhook: Webhook, since: datetime):
    return Delivery.objects.filter(webhook=webhook, status=DeliveryStatus.FAILED, created_at__gte=since).exclude(
        event_name=conf.TEST_EVENT
    )


def _missed_events(webhook: Webhook, since: datetime):
    start = max(since, webhook.created_at)  # events from before the endpoint existed were not missed
    return (
        Event.objects.filter(_subscribed(webhook), created_at__gte=start)
        .exclude(webhook_deliveries__webhook=webhook)
        .order_by("seq")
    )


def replay_offer(webhook: Webhook, since: datetime) -> dict:
    return {
        "since": since,
        "failedDeliveries": _failed(webhook, since).count(),
        "missedEvents": _missed_events(webhook, since).count(),
    }


def replay(webhook: Webhook, since: datetime) -> dict:
    """Re-send failed deliveries created since `since` (one manual attempt each) and deliver the
    subscribed events of that period that never got a delivery (while the endpoint was off)."""
    if not webhook.active:
        raise Busy("The webhook is disabled; enable it before replaying, or nothing would be sent.")
    failed = list(_failed(webhook, since).order_by("pk").values_list("pk", flat=True)[:REPLAY_LIMIT])
    missed = list(_missed_events(webhook, since)[: REPLAY_LIMIT - len(failed)])
    for event in missed:
        delivery.create_for_event(event, [webhook])
    delivery.enqueue_ids(failed, manual=True)
    more = len(failed) + len(missed) >= REPLAY_LIMIT
    return {"since": since, "failedDeliveries": len(failed), "missedEvents": len(missed), "truncated": more}


# --- sending by hand ----------------------------------------------------------------------


@transaction.atomic
def send_test(webhook: Webhook) -> Delivery:
    """A `webhook.test` event through the normal pipeline: an outbox Event row, dispatched on
    commit to the webhooks subscriber like any task event, sent by the delivery task.

    The Delivery is created here too (the subscriber then finds it and creates nothing twice)
    so the caller can point at it straight away.
    """
    event = events.publish(
        conf.TEST_EVENT,
        None,
        data={"webhookId": webhook.pk, "message": "A test delivery from Optio. If you can read this, it works."},
    )
    delivery.create_for_event(event, [webhook], enqueue=False)
    return Delivery.objects.select_related("webhook", "event").get(event=event, webhook=webhook)


def redeliver(item: Delivery) -> None:
    """Queue one manual attempt of `item`, whatever its status, unless it is being sent right now."""
    if item.status == DeliveryStatus.SENDING and item.claimed_until and item.claimed_until > timezone.now():
        raise Busy("This delivery is being sent right now; wait for the attempt to finish.")
    delivery.enqueue_ids([item.pk], manual=True)


@transaction.atomic
def reencrypt_secrets() -> int:
    """Move every stored signing secret to the newest OPTIO_SECRET_KEYS key (after a key rotation)."""
    count = 0
    for hook in Webhook.objects.select_for_update():
        hook.secret_encrypted = crypto.rotate(hook.secret_encrypted)
        if hook.previous_secret_encrypted:
            hook.previous_secret_encrypted = crypto.rotate(hook.previous_secret_encrypted)
        hook.save(update_fields=["secret_encrypted", "previous_secret_encrypted"])
        count += 1
    return count
