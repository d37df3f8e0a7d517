"""PostgreSQL statements for the delivery hot path: one round trip each, committed asynchronously.

Why: every delivery creates a row, claims it and records an attempt. Through the ORM that is
about ten round trips and three synchronous commits, and a synchronous commit waits for the
WAL to reach the disk (~2 ms here). These three writes (one statement each for a whole batch
in drains) are bookkeeping that the system can always redo, so outside a transaction they
commit with `synchronous_commit = off`:

- a lost creation: the event's `dispatched_at` (a synchronous commit that comes after it and
  flushes it) was not written either, so the event is dispatched again;
- a lost claim or attempt record: the delivery is `pending`, or `sending` with a lease that
  runs out, so the sweeper sends it again.

So a PostgreSQL crash can make a delivery go out twice (with the same webhook-id, which is
derived from the event and the endpoint), never go missing. Every statement is sent as one
`BEGIN; SET LOCAL …; <statement>; COMMIT` string, which needs the connection outside any
transaction; callers fall back to the ORM otherwise (and on SQLite).
"""

from __future__ import annotations

import json
from datetime import datetime

import orjson
from django.db import connection

from optio.dispatch import WALK_INDEX

_PREFIX = "BEGIN; SET LOCAL synchronous_commit TO off; "
_SUFFIX = "; COMMIT"


def usable() -> bool:
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def _run_in_transaction(statement: str, params) -> list[tuple]:
    """Run inside the caller's transaction (and its commit), e.g. the dispatcher's fan-out."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description is not None else []


def _run(statement: str, params, settings: str = "") -> list[tuple]:
    with connection.cursor() as cursor:
        try:
            cursor.execute(_PREFIX + settings + statement + _SUFFIX, params)
        except Exception:
            cursor.execute("ROLLBACK")
            raise
        raw = cursor.cursor
        rows: list[tuple] = []
        while True:
            if raw.description is not None:
                rows = raw.fetchall()
            if not raw.nextset():
                break
        return rows


DELIVERY_COLUMNS = (
    "public_id",
    "webhook_id",
    "event_id",
    "event_name",
    "body",
    "status",
    "success",
    "attempt_count",
    "scheduled_attempts",
    "next_attempt_at",
    "enqueued_at",
    "last_error",
    "created_at",
    "finished_at",
)


def insert_deliveries(rows: list[dict]) -> list[int]:
    """Insert, skipping (event, webhook) pairs that exist; returns the ids of the new rows."""
    values = ", ".join("(" + ", ".join(["%s"] * len(DELIVERY_COLUMNS)) + ")" for _ in rows)
    params = [row[c] for row in rows for c in DELIVERY_COLUMNS]
    # Identifiers below are this module's constants (or checked against them); values are parameters.
    statement = (
        f"INSERT INTO webhook_deliveries ({', '.join(DELIVERY_COLUMNS)}) VALUES {values} "  # noqa: S608
        "ON CONFLICT DO NOTHING RETURNING id"
    )
    return [r[0] for r in _run(statement, params)]


def create_for_subscribers(values: dict) -> list[tuple[int, str, int]]:
    """Create the deliveries of one event to every active webhook subscribed to it, choosing the
    webhooks in the same statement. Returns (id, status, attempt_count) of each delivery of the
    event, new or already there (a re-dispatch), so the caller can queue what is unsent.

    Pattern matching mirrors models.pattern_matches; the id mirrors models.message_id. Inside a
    transaction (the dispatcher's fan-out) the rows commit with it; outside one, on their own.
    """
    statement = """
        INSERT INTO webhook_deliveries (public_id, webhook_id, event_id, event_name, body, status, success,
            attempt_count, scheduled_attempts, next_attempt_at, enqueued_at, last_error, created_at, finished_at)
        SELECT 'msg_' || left(encode(sha256(convert_to(%(evt)s || ':' || w.id, 'UTF8')), 'hex'), 32),
            w.id, %(seq)s, %(name)s, %(body)s, %(status)s, false, 0, 0,
            %(next_attempt_at)s, %(enqueued_at)s, %(last_error)s, %(now)s, %(finished_at)s
        FROM webhooks AS w
        WHERE w.active AND EXISTS (
            SELECT 1 FROM jsonb_array_elements_text(w.events) AS p(pattern)
            WHERE p.pattern = '*' OR p.pattern = %(name)s OR (
                right(p.pattern, 2) = '.*'
                AND left(%(name)s, length(p.pattern) - 1) = left(p.pattern, length(p.pattern) - 1)
            )
        )
        ON CONFLICT ON CONSTRAINT delivery_one_per_event_webhook DO UPDATE SET event_name = EXCLUDED.event_name
        RETURNING id, status, attempt_count"""
    run = _run_in_transaction if connection.in_atomic_block else _run
    return [tuple(r) for r in run(statement, values)]


def create_for_events(events: list[dict], enqueued_at: datetime, now: datetime) -> list[tuple[int, str, int]]:
    """`create_for_subscribers` for a batch of events in one statement: each of `events` holds
    evt, seq, name, body, status, next_attempt_at, last_error and finished_at. Inside the
    dispatcher's transaction, which commits the rows.

    The events travel as one JSON document: as arrays, psycopg's quoting of every element
    (a regular expression per string) was ~15% of a dispatch's CPU."""
    statement = """
        INSERT INTO webhook_deliveries (public_id, webhook_id, event_id, event_name, body, status, success,
            attempt_count, scheduled_attempts, next_attempt_at, enqueued_at, last_error, created_at, finished_at)
        SELECT 'msg_' || left(encode(sha256(convert_to(e.evt || ':' || w.id, 'UTF8')), 'hex'), 32),
            w.id, e.seq, e.name, e.body, e.status, false, 0, 0,
            e.next_attempt_at, %(enqueued_at)s, e.last_error, %(now)s, e.finished_at
        FROM jsonb_to_recordset(%(events)s::jsonb) AS e(evt text, seq bigint, name text, body text, status text,
            next_attempt_at timestamptz, last_error text, finished_at timestamptz)
        JOIN webhooks AS w ON w.active AND EXISTS (
            SELECT 1 FROM jsonb_array_elements_text(w.events) AS p(pattern)
            WHERE p.pattern = '*' OR p.pattern = e.name OR (
                right(p.pattern, 2) = '.*'
                AND left(e.name, length(p.pattern) - 1) = left(p.pattern, length(p.pattern) - 1)
            )
        )
        ON CONFLICT ON CONSTRAINT delivery_one_per_event_webhook DO UPDATE SET event_name = EXCLUDED.event_name
        RETURNING id, status, attempt_count"""
    params = {"events": orjson.dumps(events).decode(), "enqueued_at": enqueued_at, "now": now}
    return [tuple(r) for r in _run_in_transaction(statement, params)]


CLAIM_RETURNING = (
    "o.status",
    "o.claimed_until",
    "d.id",
    "d.public_id",
    "d.event_name",
    "d.body",
    "d.next_attempt_at",
    "d.scheduled_attempts",
    "d.attempt_count",
    "w.id",
    "w.url",
    "w.secret_encrypted",
    "w.previous_secret_encrypted",
    "w.previous_secret_expires_at",
    "w.active",
    "w.last_success_at",
    "w.failing_since",
)


def claim_scheduled(delivery_id: int, now: datetime, lease_until: datetime, test_event: str) -> dict | None:
    """Claim a due delivery (or one whose lease ran out) for a scheduled attempt.

    The self-join exposes the row as it was before the update (`o`), so the caller learns
    whether it took over an expired lease. A concurrent claimer blocks on the row lock, then
    re-checks the WHERE clause against the updated row and finds nothing to do.
    """
    statement = f"""
        UPDATE webhook_deliveries AS d
        SET status = 'sending', claimed_until = %(lease)s,
            attempt_count = d.attempt_count + 1, scheduled_attempts = d.scheduled_attempts + 1
        FROM webhook_deliveries AS o JOIN webhooks AS w ON w.id = o.webhook_id
        WHERE d.id = %(id)s AND o.id = d.id AND (
            (d.status = 'pending' AND d.next_attempt_at <= %(now)s AND (w.active OR d.event_name = %(test)s))
            OR (d.status = 'sending' AND (d.claimed_until IS NULL OR d.claimed_until < %(now)s))
        )
        RETURNING {", ".join(CLAIM_RETURNING)}"""  # noqa: S608
    rows = _run(statement, {"id": delivery_id, "now": now, "lease": lease_until, "test": test_event})
    if not rows:
        return None
    return dict(zip([c.replace(".", "_") for c in CLAIM_RETURNING], rows[0], strict=True))


ATTEMPT_COLUMNS = (
    "delivery_id",
    "number",
    "trigger",
    "started_at",
    "duration_ms",
    "request_url",
    "request_headers",
    "response_status",
    "response_headers",
    "response_body",
    "response_truncated",
    "success",
    "error_class",
    "error",
)
JSON_COLUMNS = {"request_headers", "response_headers"}
SETTABLE = {
    "status",
    "status_code",
    "success",
    "claimed_until",
    "last_error",
    "next_attempt_at",
    "finished_at",
    "enqueued_at",
}


def record_attempt(attempt: dict, delivery_id: int, number: int, changes: dict) -> None:
    """Insert the attempt and settle the delivery, if this claim still holds it, in one statement."""
    unknown = set(changes) - SETTABLE
    if unknown:
        raise ValueError(f"cannot set {sorted(unknown)}")
    placeholders = ", ".join("%s::jsonb" if c in JSON_COLUMNS else "%s" for c in ATTEMPT_COLUMNS)
    params = [json.dumps(attempt[c]) if c in JSON_COLUMNS else attempt[c] for c in ATTEMPT_COLUMNS]
    assignments = ", ".join(f"{column} = %s" for column in changes)
    params += list(changes.values()) + [delivery_id, number]
    statement = (
        f"WITH attempt AS (INSERT INTO webhook_attempts ({', '.join(ATTEMPT_COLUMNS)}) VALUES ({placeholders})) "  # noqa: S608
        f"UPDATE webhook_deliveries SET {assignments} WHERE id = %s AND attempt_count = %s AND status = 'sending'"
    )
    _run(statement, params)


# --- batches: one statement claims many deliveries, one records many attempts ----------------

BATCH_RETURNING = tuple(c for c in CLAIM_RETURNING if not c.startswith("o."))


def claim_due(limit: int, now: datetime, lease_until: datetime, test_event: str, disabled_error: str) -> list[dict]:
    """Claim up to `limit` due pending deliveries, oldest due first, for a scheduled attempt each.

    WALK_INDEX: the batch is read from delivery_due in order, not every due row sorted (a
    burst of 5,000 deliveries was otherwise read once per batch of 100).

    `FOR UPDATE SKIP LOCKED` lets concurrent drains split the backlog instead of queueing on
    each other's rows; each row is then claimed under the same lease as a single claim, so a
    drain that dies leaves leases the sweeper takes over. Due deliveries of a disabled endpoint
    are settled as failed in the same statement (they would otherwise stay due forever and
    fill every batch); their error is `disabled_error` followed by the endpoint's reason.
    """
    statement = f"""
        WITH due AS (
            SELECT c.id FROM webhook_deliveries AS c
            WHERE c.status = 'pending' AND c.next_attempt_at <= %(now)s
            ORDER BY c.next_attempt_at
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ), off AS (
            UPDATE webhook_deliveries AS d
            SET status = 'failed', next_attempt_at = NULL, finished_at = %(now)s,
                last_error = %(off)s || COALESCE(NULLIF(w.disabled_reason, ''), 'the endpoint is disabled.')
            FROM due, webhooks AS w
            WHERE d.id = due.id AND w.id = d.webhook_id AND NOT w.active AND d.event_name <> %(test)s
        )
        UPDATE webhook_deliveries AS d
        SET status = 'sending', claimed_until = %(lease)s,
            attempt_count = d.attempt_count + 1, scheduled_attempts = d.scheduled_attempts + 1
        FROM due, webhooks AS w
        WHERE d.id = due.id AND w.id = d.webhook_id AND (w.active OR d.event_name = %(test)s)
        RETURNING {", ".join(BATCH_RETURNING)}"""  # noqa: S608
    params = {"limit": limit, "now": now, "lease": lease_until, "test": test_event, "off": disabled_error}
    names = [c.replace(".", "_") for c in BATCH_RETURNING]
    return [dict(zip(names, row, strict=True)) for row in _run(statement, params, WALK_INDEX)]


# Casts make every VALUES column typed even when all its rows are NULL.
SETTLE_COLUMNS = (
    ("id", "bigint"),
    ("number", "integer"),
    ("status", "text"),
    ("status_code", "integer"),
    ("success", "boolean"),
    ("last_error", "text"),
    ("next_attempt_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("enqueued_at", "timestamptz"),  # NULL keeps the current value
)


ATTEMPT_TYPES = {
    "delivery_id": "bigint",
    "number": "integer",
    "trigger": "text",
    "started_at": "timestamptz",
    "duration_ms": "integer",
    "request_url": "text",
    "request_headers": "jsonb",
    "response_status": "smallint",
    "response_headers": "jsonb",
    "response_body": "text",
    "response_truncated": "boolean",
    "success": "boolean",
    "error_class": "text",
    "error": "text",
}


def record_attempts(attempts: list[dict], settled: list[dict]) -> None:
    """Insert many attempts and settle their deliveries, each only if its claim still holds, in
    one statement. `settled` rows carry SETTLE_COLUMNS; the lease is cleared on each.

    The rows travel as two JSON documents rather than one parameter per value: with ~500
    parameters a batch, psycopg's client-side parsing of the statement was ~15% of a drain's CPU."""
    if not attempts:
        return
    attempt_types = ", ".join(f"{c} {ATTEMPT_TYPES[c]}" for c in ATTEMPT_COLUMNS)
    settle_types = ", ".join(f"{c} {kind}" for c, kind in SETTLE_COLUMNS)
    statement = (
        f"WITH attempt AS (INSERT INTO webhook_attempts ({', '.join(ATTEMPT_COLUMNS)}) "  # noqa: S608
        f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM jsonb_to_recordset(%s::jsonb) AS a({attempt_types})) "
        "UPDATE webhook_deliveries AS d SET status = v.status, status_code = v.status_code, success = v.success, "
        "claimed_until = NULL, last_error = v.last_error, next_attempt_at = v.next_attempt_at, "
        "finished_at = v.finished_at, enqueued_at = COALESCE(v.enqueued_at, d.enqueued_at) "
        f"FROM jsonb_to_recordset(%s::jsonb) AS v({settle_types}) "
        "WHERE d.id = v.id AND d.attempt_count = v.number AND d.status = 'sending'"
    )
    rows = [{c: a[c] for c in ATTEMPT_COLUMNS} for a in attempts]
    settle = [{c: row[c] for c, _ in SETTLE_COLUMNS} for row in settled]
    _run(statement, [orjson.dumps(rows).decode(), orjson.dumps(settle).decode()])
