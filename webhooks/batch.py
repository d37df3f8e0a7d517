"""Draining due deliveries: one job claims a batch, sends it concurrently, records it together.

Why: a Celery job per delivery cost ~8-11 ms of worker CPU (message round trips, several
statements and one request each). A drain claims up to `conf.batch_size()` due deliveries,
sends them at once over the pooled connections of integrations/http.py, and on PostgreSQL
records every attempt and settles every delivery in one more statement.

The guarantees are those of a single attempt (webhooks/delivery.py): each row is claimed
under the same lease, so two drains never send it and a drain killed mid-batch leaves leases
that run out and are rescued by the sweeper; settling is conditional on still holding the
claim; bodies, webhook-ids and the retry schedule are computed by the same functions.

A slow endpoint: each claimed delivery gets a sender thread of its own (from a pool shared by
the process's drains), so a hanging endpoint delays only its own requests, each bounded by
the request timeouts, and what finished first is recorded without waiting for it.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from django.utils import timezone

from integrations import http
from webhooks import conf, delivery, health, sql
from webhooks.models import Delivery, DeliveryStatus

log = logging.getLogger(__name__)

PENDING = DeliveryStatus.PENDING
Item = Delivery | delivery.Claimed  # row by row: a Delivery; on the PostgreSQL batch path: delivery.Claimed
Taken = tuple[Item, int]  # the delivery and the number of the attempt it was claimed for
Sent = tuple[Item, int, dict, delivery.Outcome]  # the attempt as sql.ATTEMPT_COLUMNS values


def drain(limit: int | None = None) -> int:
    """Send one batch of due deliveries; returns how many were claimed."""
    claimed = claim(limit or conf.batch_size())
    if not claimed:
        return 0
    outgoing = _prepare(claimed)
    sending = http.send_all(outgoing, executor=_pool(), lanes=conf.lanes(), **delivery.limits())

    def sent(indexes) -> list[Sent]:
        return [_sent(claimed[i], outgoing[i], sending.results[i]) for i in indexes]

    if sending.wait(conf.straggler_wait()):
        record(sent(range(len(claimed))))
    else:  # a slow endpoint: record what has finished now, the rest when it has
        first = [i for i, result in enumerate(sending.results) if result is not None]
        record(sent(first))
        sending.wait()
        recorded = set(first)
        record(sent(i for i in range(len(claimed)) if i not in recorded))
    return len(claimed)


# --- claiming -----------------------------------------------------------------------------


def claim(limit: int) -> list[Taken]:
    now = timezone.now()
    if sql.usable():
        # One statement sees the rows committed when it began, less those that racing drains
        # hold; a racing drain that began later can take rows this one saw and leave it short
        # while rows it could not see are due. Drains are queued one per batch of new rows, so
        # such a shortfall left the newest rows for the sweeper (20-80 of a 5,000 burst, now and
        # then; bench_webhooks). So a short claim is followed by another, with a fresh view,
        # until one finds nothing: what it then cannot see was committed later, with drains of its own.
        hooks: dict = {}
        items: list[delivery.Claimed] = []
        while len(items) < limit:
            now = timezone.now()
            rows = sql.claim_due(limit - len(items), now, now + conf.lease(), conf.TEST_EVENT, "Not sent: ")
            if not rows:
                break
            items += [delivery.from_claim_row(row, hooks) for row in rows]
        return [(item, item.attempt_count) for item in items]
    # SQLite (embedded) and callers inside a transaction: one compare-and-set claim per row.
    # Drains running at once read the same oldest rows and split them; each carries on past
    # the rows another took, or the rest would wait for the sweeper (jobs are queued per batch).
    due = Delivery.objects.filter(status=PENDING, next_attempt_at__lte=now).order_by("next_attempt_at", "pk")
    claimed: list[Taken] = []
    tried: list[int] = []
    while len(claimed) < limit:
        candidates = list(due.exclude(pk__in=tried).values_list("pk", flat=True)[: limit - len(claimed)])
        if not candidates:
            break
        for pk in candidates:
            got = delivery._claim(pk, manual=False)
            if got is not None:
                claimed.append(got[:2])
        tried += candidates
    return claimed


# --- sending ------------------------------------------------------------------------------

_senders: ThreadPoolExecutor | None = None
_senders_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _senders
    with _senders_lock:
        if _senders is None:
            _senders = ThreadPoolExecutor(max_workers=conf.send_threads(), thread_name_prefix="webhook-send")
        return _senders


def _after_fork_in_child() -> None:
    global _senders, _senders_lock
    _senders, _senders_lock = None, threading.Lock()  # the parent's threads do not exist here


os.register_at_fork(after_in_child=_after_fork_in_child)


def _prepare(claimed: list[Taken]) -> list[http.Outgoing]:
    # Secrets are decrypted once per endpoint and every request signed here, so sender
    # threads only send.
    secrets: dict[int, list[str]] = {}
    for item, _ in claimed:
        if item.webhook_id not in secrets:
            secrets[item.webhook_id] = item.webhook.signing_secrets()
    return [delivery.prepare(item, secrets[item.webhook_id]) for item, _ in claimed]


def _sent(claimed: Taken, outgoing: http.Outgoing, result: http.Result) -> Sent:
    item, number = claimed
    values, outcome = delivery.attempt_values(item, number, outgoing, result)
    return item, number, values, outcome


# --- recording ----------------------------------------------------------------------------


def record(sent: list[Sent]) -> None:
    """Record the attempts, settle the deliveries, update endpoint health and queue early retries."""
    if not sent:
        return
    if not sql.usable():
        for item, number, attempt, outcome in sent:
            delivery._record(item, number, attempt, outcome, False, PENDING)  # health and retries too
        return
    now = timezone.now()
    attempts, settled, retries = [], [], []
    for item, number, attempt, outcome in sent:
        changes, delay = delivery.settle(item, outcome, False, PENDING, now)
        attempts.append(attempt)
        settled.append({"id": item.pk, "number": number, "finished_at": None, "enqueued_at": None, **changes})
        if "enqueued_at" in changes:
            retries.append(delay)
    sql.record_attempts(attempts, settled)
    _update_health(sent, now)
    _queue_retries(retries)


def _update_health(sent: list[Sent], now) -> None:
    """One health update per endpoint: its 410 if it answered one, else its last outcome."""
    final: dict[int, tuple[Item, delivery.Outcome]] = {}
    for item, _, _, outcome in sent:
        previous = final.get(item.webhook_id)
        if previous is None or not previous[1].gone:
            final[item.webhook_id] = (item, outcome)
    for item, outcome in final.values():
        health.update(item.webhook, outcome, now)


def _queue_retries(delays: list[float]) -> None:
    """Retries due within conf.countdown_max() get drains queued for when they fall due (later ones
    wait for the sweeper): per whole second, enough drains for the retries due then."""
    by_second: dict[int, int] = defaultdict(int)
    for delay in delays:
        by_second[math.ceil(delay)] += 1
    for second, count in sorted(by_second.items()):
        delivery.enqueue_drains(math.ceil(count / conf.batch_size()), countdown=second)
