"""Dispatch: fan committed Events out to the registered subscribers (claim, fan out, mark).

1. Claim. In one short transaction that holds the stream lock, pick the committed,
   undispatched events nobody holds (`claimed_until` empty or past), oldest first, give
   each a lease (`claimed_until = now + LEASE`) and, on its first claim, the next
   `stream_seq`. Two dispatchers of the same event never both win the claim, so an event
   is fanned out once (`test_double_dispatch_delivers_once`).

2. Fan out. Call every subscriber not yet in `subscribers_done`, each in its own
   transaction. One failing subscriber does not stop the others.

3. Mark. All succeeded: `dispatched_at` is set and the event is done. Some raised: the
   successes go into `subscribers_done`, `attempts` grows and `claimed_until` becomes the
   back-off (5 s doubling to 10 min); the sweeper calls only the ones that failed, for as
   long as they fail (`last_error` says why, in the admin). Nothing committed is dropped.
   A worker that dies mid-batch leaves its lease to expire; the sweeper then dispatches
   those events again, which is why subscribers must be idempotent (optio/events.py).

Why `stream_seq` and not `seq`. `seq` is handed out at INSERT, and transactions commit in
any order: a client that has seen seq 8 could later miss a 7 committed after it. Stream
numbers are handed out under a lock (a PostgreSQL advisory lock held until the claim
commits; SQLite serialises writers already), so when number N is visible every lower
number is visible too. /ws/events frames carry `stream_seq` as their `seq`, so resuming
with ?after=N can neither skip nor repeat anything (optio/consumers.py).

Claiming takes the waiting events in `seq` order (every one committed so far, up to a batch,
not only those up to the one asked for), so the events of one transaction (task.created,
task.queued) reach the stream in the order they happened.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from optio import events
from optio.models import Event

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
SWEEP_AFTER = timedelta(seconds=5)
BATCH = 200
# Batches one dispatch job fans out before handing over to a fresh job, so a steady stream of
# commits cannot hold one worker thread for ever.
MAX_BATCHES_PER_JOB = 25
BACKOFF_FIRST, BACKOFF_MAX = 5, 600
# pg_advisory_xact_lock key serialising stream numbering ("optiostr" as a 64-bit int).
STREAM_LOCK_KEY = 0x6F7074696F737472
# Statements that take a batch, oldest first, from a partial index (here and in webhooks/sql.py)
# run with these: see _begin_claim.
WALK_INDEX = "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off; "


def dispatch(seq: int) -> int:
    """Fan out every committed event still waiting, oldest first, in batches; how many were
    fanned out. `seq` is the event whose commit queued this job; it may be taken already."""
    # Cleared before claiming: an event committed from here on queues a job of its own, and
    # every event committed before is visible to the claims below (optio/events.py).
    events.dispatch_started()
    total = 0
    for _ in range(MAX_BATCHES_PER_JOB):
        count = _run(Q())
        total += count
        if count < BATCH:
            return total
    events.request_dispatch(seq)  # still more waiting: a fresh job carries on
    return total


def sweep(older_than: timedelta = SWEEP_AFTER, max_batches: int = 10) -> int:
    """Dispatch events left undispatched for longer than `older_than` (broker down, worker lost)."""
    cutoff = timezone.now() - older_than
    total = 0
    for _ in range(max_batches):
        count = _run(Q(created_at__lt=cutoff))
        total += count
        if count < BATCH:
            break
    if total:
        log.info("sweeper dispatched %s event(s)", total)
    return total


def _run(where: Q) -> int:
    claimed = claim(where)
    if claimed:
        fan_out(claimed)
    return len(claimed)


def claim(where: Q, limit: int | None = None) -> list[Event]:
    """Lease the waiting events matching `where` (oldest first) and number them for the stream."""
    now = timezone.now()
    with transaction.atomic():
        _begin_claim()
        claimed = list(waiting(where, now)[: limit or BATCH])
        if not claimed:
            return []
        next_number = None
        for event in claimed:
            if event.stream_seq is None:
                if next_number is None:
                    next_number = (Event.objects.aggregate(m=Max("stream_seq"))["m"] or 0) + 1
                event.stream_seq = next_number
                next_number += 1
            event.claimed_until = now + LEASE
        _save_claim(claimed, now + LEASE)
    return claimed


def waiting(where: Q, now: datetime) -> QuerySet[Event]:
    """Undispatched events matching `where` that nobody holds, oldest first (index event_waiting)."""
    return (
        Event.objects.filter(where, dispatched_at__isnull=True)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("seq")
    )


def _save_claim(claimed: list[Event], lease: datetime) -> None:
    if connection.vendor == "postgresql":
        # One statement with two array parameters: Django's bulk_update builds a CASE per row
        # and spent ~100 ms of Python on a batch of 200 (bench_webhooks).
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Event._meta.db_table} AS e SET stream_seq = v.n, claimed_until = %s "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::bigint[]) AS v(seq, n) WHERE e.seq = v.seq",
                [lease, [e.seq for e in claimed], [e.stream_seq for e in claimed]],
            )
    else:
        Event.objects.bulk_update(claimed, ["stream_seq", "claimed_until"])


def _begin_claim() -> None:
    """Take the stream lock, and make this transaction walk event_waiting in seq order.

    Why the plan is forced: with statistics that say few events wait (a fresh database, or
    autovacuum off, as on the machines here), the planner picked a bitmap scan of the partial
    index and a sort, which reads every waiting event to return a batch: each of a 5,000-event
    burst's 25 batches read them all (~40 µs of PostgreSQL CPU per event; bench_webhooks). The
    ordered index scan stops after a batch, whatever the statistics say."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(WALK_INDEX + "SELECT pg_advisory_xact_lock(%s)", [STREAM_LOCK_KEY])
    # SQLite (embedded): transactions begin IMMEDIATE, so the write lock is already ours.


def fan_out(claimed: list[Event]) -> None:
    # One transaction for the whole batch, a savepoint per subscriber: a failing subscriber
    # still rolls back alone, but the batch costs one commit (one WAL flush on PostgreSQL)
    # instead of one per subscriber per event. Rows the subscribers write and the jobs they
    # enqueue on commit become visible together with the "dispatched" mark.
    with transaction.atomic():
        _fan_out(claimed)


def _fan_out(claimed: list[Event]) -> None:
    subs, batch = events.subscribers(), events.batch_subscribers()
    done = {event.pk: list(event.subscribers_done) for event in claimed}
    errors: dict[int, list[str]] = {event.pk: [] for event in claimed}
    for name, fn in subs.items():
        todo = [event for event in claimed if name not in done[event.pk]]
        if len(todo) > 1 and _call_for_batch(name, fn, batch.get(name), todo):
            for event in todo:
                done[event.pk].append(name)
            continue
        for event in todo:  # one savepoint each: a failing event is retried alone
            try:
                with transaction.atomic():
                    fn(event)
            except Exception as exc:
                log.exception("subscriber %s failed for event %s (%s)", name, event.public_id, event.name)
                errors[event.pk].append(f"{name}: {exc.__class__.__name__}: {exc}")
            else:
                done[event.pk].append(name)
    done_ids = []
    for event in claimed:
        if errors[event.pk]:
            attempts = event.attempts + 1
            backoff = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempts - 1))
            Event.objects.filter(pk=event.pk).update(
                subscribers_done=done[event.pk],
                attempts=attempts,
                claimed_until=timezone.now() + timedelta(seconds=backoff),
                last_error="\n".join(errors[event.pk])[:4000],
            )
        else:
            done_ids.append(event.pk)
    if done_ids:
        Event.objects.filter(pk__in=done_ids).update(
            dispatched_at=timezone.now(), claimed_until=None, subscribers_done=sorted(subs), last_error=""
        )


def _call_for_batch(name: str, fn: events.Subscriber, many: events.BatchSubscriber | None, todo: list[Event]) -> bool:
    """One savepoint for the whole batch (its batch form if it has one): a savepoint per event
    per subscriber cost two round trips each. False when it failed: the caller then retries the
    events one by one, so only a failing event waits for the sweeper."""
    try:
        with transaction.atomic():
            if many is not None:
                many(todo)
            else:
                for event in todo:
                    fn(event)
    except Exception:
        log.warning("subscriber %s failed on a batch of %d events; retrying them one by one", name, len(todo))
        return False
    return True


def to_websockets(event: Event) -> None:
    """The core's own subscriber: live frames for /ws/events and /ws/logs/<taskId>."""
    from optio.realtime import send_to_group, wire

    message = {"type": "event.frames", "frames": [wire(events.frame(event))]}
    send_to_group("events", message, raise_errors=True)
    if event.task_id:
        send_to_group(f"task-{event.task_id}", message, raise_errors=True)


def to_websockets_many(batch: list[Event]) -> None:
    """`to_websockets` for a batch: one message per group instead of one per event."""
    from optio.realtime import send_to_group, wire

    frames = [wire(events.frame(event)) for event in batch]
    send_to_group("events", {"type": "event.frames", "frames": frames}, raise_errors=True)
    by_task: dict = {}
    for event, frame in zip(batch, frames, strict=True):
        if event.task_id:
            by_task.setdefault(event.task_id, []).append(frame)
    for task_id, task_frames in by_task.items():
        send_to_group(f"task-{task_id}", {"type": "event.frames", "frames": task_frames}, raise_errors=True)
