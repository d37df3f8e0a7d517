"""Deliveries: created per (event, webhook), claimed atomically, sent, recorded, retried.

The life of a delivery:

    pending ──claim──> sending ──2xx──> success
       ^                  │──410, too large, retries exhausted──> failed
       └──retry later─────┘

A claim is a compare-and-set on (status, attempt_count), so of two workers holding the same
message only one sends. A claim is a lease: a worker that dies mid-request leaves the row
`sending` with an expired `claimed_until`, and the sweeper hands it to another worker, which
first records the lost attempt. Retries are rows with a `next_attempt_at`, not ETA messages:
the sweeper (a beat job, webhooks/sweeper.py) queues drains for whatever is due, so nothing
depends on the broker keeping a message for hours.

Scheduled attempts are made in batches by drain jobs (webhooks/batch.py) with the functions
below; `attempt` makes one (manual sends, and taking over an expired lease).
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from integrations import http
from optio import events
from optio.models import Event
from webhooks import conf, health, signing, sql
from webhooks.models import Attempt, AttemptTrigger, Delivery, DeliveryStatus, Webhook, message_id

log = logging.getLogger(__name__)

PENDING, SENDING, SUCCESS, FAILED = (
    DeliveryStatus.PENDING,
    DeliveryStatus.SENDING,
    DeliveryStatus.SUCCESS,
    DeliveryStatus.FAILED,
)


# --- creating deliveries ------------------------------------------------------------------


def serialize(event: Event) -> str:
    return events.json_text(event.envelope())


def targets(event: Event) -> list[Webhook]:
    if event.name == conf.TEST_EVENT:  # a test goes to the one webhook it names, active or not
        return list(Webhook.objects.filter(pk=event.data.get("webhookId")))
    return [w for w in Webhook.objects.filter(active=True).only("id", "events") if w.subscribes_to(event.name)]


def create_for_event(event: Event, webhooks: list[Webhook] | None = None, *, enqueue: bool = True) -> list[int]:
    """The webhooks subscriber: one Delivery per matching webhook, each queued once this commits.

    Idempotent: the (event, webhook) unique constraint makes a re-dispatch create nothing
    twice; what is queued again is only what has not been attempted yet, and the claim
    makes a duplicate message harmless.
    """
    now = timezone.now()
    values = _values(event, now)
    too_large = values["status"] == FAILED
    if webhooks is None and event.name != conf.TEST_EVENT and connection.vendor == "postgresql":
        # The usual case on PostgreSQL: pick the subscribed webhooks and insert in one round trip
        # (inside the dispatcher's transaction, or committed on its own outside one).
        rows = sql.create_for_subscribers({**values, "enqueued_at": now if enqueue else None, "now": now})
        ids = [pk for pk, status, attempts in rows if status == PENDING and attempts == 0]
        if enqueue and ids:
            request_drains(len(ids))
        return ids
    hooks = targets(event) if webhooks is None else webhooks
    if not hooks:
        return []
    fields = [
        {
            "public_id": message_id(event.public_id, w.pk),
            "webhook_id": w.pk,
            "event_id": event.seq,
            "event_name": event.name,
            "body": values["body"],
            "status": values["status"],
            "success": False,
            "attempt_count": 0,
            "scheduled_attempts": 0,
            "next_attempt_at": values["next_attempt_at"],
            "enqueued_at": now if enqueue else None,
            "last_error": values["last_error"],
            "created_at": now,
            "finished_at": values["finished_at"],
        }
        for w in hooks
    ]
    unsent = Delivery.objects.filter(
        event_id=event.seq, webhook_id__in=[w.pk for w in hooks], status=PENDING, attempt_count=0
    ).values_list("pk", flat=True)
    if sql.usable():
        # Outside a transaction on PostgreSQL: one round trip when every row is new (the usual case).
        ids = sql.insert_deliveries(fields)
        if len(ids) < len(fields):  # some existed (a re-dispatch, or a test created in its request)
            ids = list(unsent)
        elif too_large:
            ids = []
        if enqueue and ids:
            request_drains(len(ids))
        return ids
    with transaction.atomic():
        Delivery.objects.bulk_create([Delivery(**f) for f in fields], ignore_conflicts=True)
        ids = list(unsent)
        if enqueue and ids:
            request_drains(len(ids))
    return ids


def _values(event: Event, now) -> dict:
    """What every delivery of `event` shares: the frozen body, and a refusal if it is too large."""
    body = serialize(event)
    size = len(body.encode())
    too_large = size > conf.MAX_PAYLOAD_BYTES
    return {
        "evt": event.public_id,
        "seq": event.seq,
        "name": event.name,
        "body": body,
        "status": FAILED if too_large else PENDING,
        "next_attempt_at": None if too_large else now,
        "last_error": f"Not sent: the payload is {size} bytes and the limit is {conf.MAX_PAYLOAD_BYTES} bytes."
        if too_large
        else "",
        "finished_at": now if too_large else None,
    }


def on_event(event: Event) -> None:
    """Registered with optio.events.subscribe("webhooks", ...)."""
    create_for_event(event)


def on_events(batch: list[Event]) -> None:
    """The batch form of `on_event` (the dispatcher's fan-out): on PostgreSQL, one statement
    creates the deliveries of every event in the batch, where one per event cost a round trip
    each (bench_webhooks: ~0.85 ms an event, most of a burst's dispatch time)."""
    if connection.vendor != "postgresql" or not connection.in_atomic_block:
        for event in batch:
            create_for_event(event)
        return
    regular = [event for event in batch if event.name != conf.TEST_EVENT]
    for event in batch:
        if event.name == conf.TEST_EVENT:  # goes to the one webhook it names
            create_for_event(event)
    if not regular:
        return
    now = timezone.now()
    rows = sql.create_for_events([_values(event, now) for event in regular], enqueued_at=now, now=now)
    unsent = sum(1 for _, status, attempts in rows if status == PENDING and attempts == 0)
    if unsent:
        request_drains(unsent)


# Deliveries that are due are sent by drain jobs (webhooks/batch.py), each claiming whatever is
# due, up to a batch. So new deliveries need drain jobs in proportion, not a message each: the
# deliveries created for every event of one dispatch batch (one transaction) share their jobs.
class _Requested(threading.local):
    def __init__(self) -> None:
        self.count = 0


_requested = _Requested()


def request_drains(count: int) -> None:
    """Queue drain jobs for `count` newly due deliveries once the current transaction commits
    (at once outside a transaction)."""
    _requested.count += count
    # Registered on every call: a callback registered inside a savepoint that rolls back is
    # dropped. The first to run queues for all; a count left by a rolled-back transaction only
    # costs one drain that finds nothing.
    transaction.on_commit(_flush_requested)


def _flush_requested() -> None:
    count, _requested.count = _requested.count, 0
    if count:
        enqueue_drains(math.ceil(count / conf.batch_size()))


def enqueue_drains(jobs: int, *, countdown: float | None = None) -> None:
    from webhooks.tasks import drain

    try:
        with drain.app.producer_or_acquire() as producer:  # one broker connection for them all
            for _ in range(jobs):
                drain.apply_async(countdown=countdown, producer=producer)
    except Exception:
        log.warning("could not enqueue %s webhook drain job(s); the sweeper will queue them", jobs, exc_info=True)


def enqueue_ids(ids: list[int], *, manual: bool = False, countdown: float | None = None) -> None:
    """One attempt per delivery id: manual sends and rescued leases (a due delivery needs a drain)."""
    from webhooks.tasks import deliver

    kwargs = {"manual": True} if manual else None
    try:
        with deliver.app.producer_or_acquire() as producer:  # one broker connection for the batch
            for pk in ids:
                deliver.apply_async((pk,), kwargs, countdown=countdown, producer=producer)
    except Exception:
        if manual:
            raise  # the caller tells the person; nothing else would retry a manual send
        log.warning("could not enqueue webhook deliveries %s; the sweeper will pick them up", ids, exc_info=True)


# --- sending ------------------------------------------------------------------------------


@dataclass
class Outcome:
    success: bool
    status_code: int | None = None
    error_class: str = ""
    error: str = ""
    retry: bool = True  # on failure: may a later attempt succeed?
    retry_after: float | None = None
    gone: bool = False


def classify(resp: http.Response) -> Outcome:
    status = resp.status
    if 200 <= status < 300:
        return Outcome(True, status)
    if status == 410:
        return Outcome(False, status, "gone", "The endpoint answered 410 Gone.", retry=False, gone=True)
    if 300 <= status < 400:
        where = resp.header("location") or "nowhere"
        return Outcome(
            False,
            status,
            "redirect",
            f"The endpoint answered {status} redirecting to {where}; redirects are not followed.",
        )
    return Outcome(
        False, status, "http_status", f"The endpoint answered {status}.", retry_after=parse_retry_after(resp)
    )


def parse_retry_after(resp: http.Response) -> float | None:
    value = (resp.header("retry-after") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - timezone.now()).total_seconds())


def next_delay(scheduled_attempts: int, retry_after: float | None = None) -> float | None:
    """Seconds until the next scheduled attempt after `scheduled_attempts` failed ones; None when exhausted."""
    schedule = conf.retry_schedule()
    if scheduled_attempts > len(schedule):
        return None
    if retry_after is not None:
        low, high = conf.retry_after_bounds()
        return min(max(retry_after, low), high)
    spread = conf.jitter()
    return schedule[scheduled_attempts - 1] * random.uniform(1 - spread, 1 + spread)


def attempt(delivery_id: int, *, manual: bool = False) -> str | None:
    """Claim, send and record one attempt of a delivery. Returns the resulting status, or None
    when there was nothing to do (not due, already claimed elsewhere, finished, or gone)."""
    claimed = _claim_fast(delivery_id) if not manual and sql.usable() else None
    if claimed is None:
        claimed = _claim(delivery_id, manual)  # also settles a due delivery of a disabled endpoint
    if claimed is None:
        return None
    delivery, number, prior = claimed
    values, outcome = send(delivery, number, manual=manual)
    return _record(delivery, number, values, outcome, manual, prior)


def send(
    delivery: Delivery, number: int, *, manual: bool = False, secrets: list[str] | None = None
) -> tuple[dict, Outcome]:
    """Sign and POST one claimed attempt; returns its Attempt row's values and its Outcome."""
    outgoing = prepare(delivery, secrets)
    (result,) = http.send_all([outgoing], **limits()).results  # no executor: sent on return
    return attempt_values(delivery, number, outgoing, result, manual=manual)


def prepare(delivery: Delivery, secrets: list[str] | None = None) -> http.Outgoing:
    """The signed request of an attempt. No database access: batches sign a whole batch at once."""
    body = delivery.body_bytes
    if secrets is None:
        secrets = delivery.webhook.signing_secrets()
    headers = signing.headers(delivery.event_name, delivery.public_id, int(time.time()), body, secrets)
    return http.Outgoing(delivery.webhook.url, headers, body)


def limits() -> dict:
    """What every attempt is bounded by, as http.send_all's keyword arguments."""
    return {
        "timeout": conf.timeout(),
        "connect_timeout": conf.connect_timeout(),
        "max_body": conf.MAX_PAYLOAD_BYTES,
        "max_response": conf.MAX_STORED_RESPONSE_BYTES,
    }


def attempt_values(
    delivery: Delivery, number: int, outgoing: http.Outgoing, result: http.Result, *, manual: bool = False
) -> tuple[dict, Outcome]:
    """The Attempt row's values (sql.ATTEMPT_COLUMNS) and the Outcome of a sent request."""
    resp, exc = result.response, result.error
    if resp is not None:
        outcome = classify(resp)
    else:
        # A payload over the limit (or a header that cannot be sent) can never succeed; a blocked
        # or unresolvable address might (DNS changes), so those retry like any other failure.
        permanent = isinstance(exc, http.PayloadTooLarge | http.InvalidHeader)
        outcome = Outcome(False, None, exc.kind, exc.reason, retry=not permanent)
    values = {
        "delivery_id": delivery.pk,
        "number": number,
        "trigger": AttemptTrigger.MANUAL if manual else AttemptTrigger.SCHEDULED,
        "started_at": datetime.fromtimestamp(result.started, tz=UTC),
        "duration_ms": int(result.elapsed * 1000),
        "request_url": outgoing.url,
        "request_headers": signing.redact(outgoing.headers),
        "response_status": resp.status if resp is not None else None,
        "response_headers": _response_headers(resp),
        "response_body": _text(resp.body.decode("utf-8", errors="replace")) if resp is not None else "",
        "response_truncated": bool(resp and resp.truncated),
        "success": outcome.success,
        "error_class": outcome.error_class,
        "error": outcome.error,
    }
    return values, outcome


def _claim_fast(delivery_id: int) -> tuple[Claimed, int, str] | None:
    now = timezone.now()
    row = sql.claim_scheduled(delivery_id, now, now + conf.lease(), conf.TEST_EVENT)
    if row is None:
        return None
    item = from_claim_row(row)
    prior = row["o_status"]
    if prior == SENDING:
        _record_lost_attempt(item, row["o_claimed_until"], now)
        prior = PENDING
    return item, item.attempt_count, prior


@dataclass(slots=True)
class Claimed:
    """A delivery claimed by the fast path, with what sending and settling it read: a plain
    object, not a Delivery (a model instance cost ~18 µs to build, a fifth of a claim's CPU)."""

    id: int
    public_id: str
    webhook: Webhook
    event_name: str
    body: str
    next_attempt_at: datetime | None
    scheduled_attempts: int
    attempt_count: int
    status: str = SENDING

    @property
    def pk(self) -> int:
        return self.id

    @property
    def webhook_id(self) -> int:
        return self.webhook.id

    @property
    def body_bytes(self) -> bytes:
        return self.body.encode()


def from_claim_row(row: dict, hooks: dict[int, Webhook] | None = None) -> Claimed:
    """The claimed delivery (with its Webhook) from a row of sql.claim_scheduled or sql.claim_due.
    `hooks` shares one Webhook object per endpoint across the rows of a batch."""
    hook = hooks.get(row["w_id"]) if hooks is not None else None
    if hook is None:
        hook = Webhook(
            id=row["w_id"],
            url=row["w_url"],
            secret_encrypted=row["w_secret_encrypted"],
            previous_secret_encrypted=row["w_previous_secret_encrypted"],
            previous_secret_expires_at=row["w_previous_secret_expires_at"],
            active=row["w_active"],
            last_success_at=row["w_last_success_at"],
            failing_since=row["w_failing_since"],
        )
        if hooks is not None:
            hooks[hook.id] = hook
    return Claimed(
        id=row["d_id"],
        public_id=row["d_public_id"],
        webhook=hook,
        event_name=row["d_event_name"],
        body=row["d_body"],
        next_attempt_at=row["d_next_attempt_at"],
        scheduled_attempts=row["d_scheduled_attempts"],
        attempt_count=row["d_attempt_count"],
    )


def _record_lost_attempt(item: Delivery, claimed_until: datetime | None, now: datetime) -> None:
    Attempt.objects.create(
        delivery_id=item.pk,
        number=item.attempt_count - 1,
        trigger=AttemptTrigger.SCHEDULED,
        started_at=claimed_until - conf.lease() if claimed_until else now,
        request_url=item.webhook.url,
        error_class="worker_lost",
        error="The worker sending this attempt stopped before it recorded a response; "
        "the receiver may or may not have received it.",
    )


def _claim(delivery_id: int, manual: bool) -> tuple[Delivery, int, str] | None:
    """Take the delivery for one attempt. Returns (delivery, attempt number, status before the claim)."""
    delivery = Delivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None:
        return None
    now = timezone.now()
    prior = delivery.status
    stale = prior == SENDING and (delivery.claimed_until is None or delivery.claimed_until < now)
    due = prior == PENDING and delivery.next_attempt_at is not None and delivery.next_attempt_at <= now
    unchanged = Delivery.objects.filter(pk=delivery.pk, status=prior, attempt_count=delivery.attempt_count)
    allowed = (prior != SENDING or stale) if manual else (due or stale)
    if not allowed:
        return None
    hook = delivery.webhook
    if due and not manual and not hook.active and delivery.event_name != conf.TEST_EVENT:
        unchanged.update(
            status=FAILED,
            next_attempt_at=None,
            finished_at=now,
            last_error=f"Not sent: {hook.disabled_reason or 'the endpoint is disabled.'}",
        )
        return None
    number = delivery.attempt_count + 1
    changes = {"status": SENDING, "claimed_until": now + conf.lease(), "attempt_count": number}
    if not manual:
        changes["scheduled_attempts"] = delivery.scheduled_attempts + 1
    if not unchanged.update(**changes):
        return None  # another worker claimed it between our read and our write
    previous_lease = delivery.claimed_until
    for field, value in changes.items():
        setattr(delivery, field, value)
    if stale:
        _record_lost_attempt(delivery, previous_lease, now)
    return delivery, number, PENDING if stale else prior


def settle(delivery: Delivery, outcome: Outcome, manual: bool, prior: str, now: datetime) -> tuple[dict, float | None]:
    """The delivery's fields after an attempt, and the delay of its next attempt when one is scheduled."""
    delay = None
    if outcome.success:
        status = SUCCESS
    elif manual:
        # A manual attempt is one extra try: a delivery that was waiting for a retry keeps its
        # schedule (its next_attempt_at is untouched); a finished one stays failed.
        status = PENDING if prior == PENDING and outcome.retry else FAILED
    elif outcome.retry:
        delay = next_delay(delivery.scheduled_attempts, outcome.retry_after)
        status = FAILED if delay is None else PENDING
    else:
        status = FAILED
    changes = {
        "status": status,
        "status_code": outcome.status_code,
        "success": outcome.success,
        "claimed_until": None,
        "last_error": outcome.error,
    }
    if status == PENDING and delay is not None:
        changes["next_attempt_at"] = now + timedelta(seconds=delay)
        if delay <= conf.countdown_max():  # a message is queued for exactly that time
            changes["enqueued_at"] = changes["next_attempt_at"]
    if status in (SUCCESS, FAILED):
        changes["next_attempt_at"] = None
        changes["finished_at"] = now
    return changes, delay


def _record(delivery: Delivery, number: int, values: dict, outcome: Outcome, manual: bool, prior: str) -> str:
    """Save the attempt (`values`: sql.ATTEMPT_COLUMNS) and settle the delivery."""
    now = timezone.now()
    changes, delay = settle(delivery, outcome, manual, prior, now)
    # Only the holder of this claim may settle the row (a sweeper may have re-leased it).
    if sql.usable():
        sql.record_attempt(values, delivery.pk, number, changes)
    else:
        with transaction.atomic():
            Attempt.objects.create(**values)
            Delivery.objects.filter(pk=delivery.pk, attempt_count=number, status=SENDING).update(**changes)
    health.update(delivery.webhook, outcome, now)
    if "enqueued_at" in changes:
        enqueue_ids([delivery.pk], countdown=delay)
    return changes["status"]


def _response_headers(resp: http.Response | None) -> dict[str, str]:
    if resp is None:
        return {}
    return {k: ("[redacted]" if k in ("set-cookie", "authorization") else _text(v)) for k, v in resp.headers.items()}


def _text(value: str) -> str:
    return value.replace("\x00", "\ufffd")  # PostgreSQL text and jsonb cannot hold NUL
