"""Endpoint health: the last success and failure, failing since when, and disabling.

An endpoint that answers 410 Gone is disabled at once; one whose deliveries have all failed
for `conf.disable_after()` is disabled with the reason recorded, by the attempt that crosses
the line or by the hourly beat job.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from webhooks import conf
from webhooks.models import Webhook

if TYPE_CHECKING:
    from webhooks.delivery import Outcome


def update(webhook: Webhook, outcome: Outcome, now: datetime) -> None:
    recent = now - timedelta(seconds=5)
    if (
        outcome.success
        and webhook.failing_since is None
        and webhook.last_success_at
        and webhook.last_success_at >= recent
    ):
        return  # healthy and recorded moments ago: no write at all (checked first: it is the usual case)
    hooks = Webhook.objects.filter(pk=webhook.pk)
    if outcome.success:
        # Throttled: under load thousands of successes a second would all rewrite one row.
        hooks.filter(
            Q(failing_since__isnull=False) | Q(last_success_at__isnull=True) | Q(last_success_at__lt=recent)
        ).update(last_success_at=now, failing_since=None)
        return
    hooks.update(last_failure_at=now, last_error=outcome.error[:2000], failing_since=Coalesce(F("failing_since"), now))
    if outcome.gone:
        disable(webhook.pk, f"Disabled on {now:%Y-%m-%d %H:%M} UTC: the endpoint answered 410 Gone.", now=now)
        return
    threshold = conf.disable_after()
    hooks.filter(active=True, failing_since__lte=now - threshold).update(
        active=False,
        disabled_at=now,
        disabled_reason=_failing_reason(threshold, outcome.error, now),
    )


def _failing_reason(threshold: timedelta, error: str, now: datetime) -> str:
    days = threshold.total_seconds() / 86400
    span = f"{days:g} days" if days >= 1 else f"{threshold.total_seconds():g} seconds"
    return f"Disabled on {now:%Y-%m-%d %H:%M} UTC: every delivery failed for {span}. Last error: {error}"


def disable(webhook_id: int, reason: str, *, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return bool(
        Webhook.objects.filter(pk=webhook_id, active=True).update(active=False, disabled_at=now, disabled_reason=reason)
    )


def disable_long_failing() -> int:
    """Beat: also catch endpoints whose last failure was before the threshold ran out."""
    threshold = conf.disable_after()
    now = timezone.now()
    count = 0
    for hook in Webhook.objects.filter(active=True, failing_since__lte=now - threshold):
        count += disable(hook.pk, _failing_reason(threshold, hook.last_error, now), now=now)
    return count
