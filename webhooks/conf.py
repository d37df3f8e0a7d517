"""Tunables of outgoing webhooks, read from Django settings with the documented defaults.

Every value can be overridden in settings (e.g. `OPTIO_WEBHOOK_RETRY_SCHEDULE = [5, 60]`);
they are read at call time so tests and worker settings can change them.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

# Seconds to wait before each retry: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (8 attempts in all).
DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_STORED_RESPONSE_BYTES = 64 * 1024
ROTATION_GRACE = timedelta(hours=24)
TEST_EVENT = "webhook.test"


def _get(name: str, default):
    return getattr(settings, name, default)


def retry_schedule() -> tuple[float, ...]:
    return tuple(float(s) for s in _get("OPTIO_WEBHOOK_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE))


def jitter() -> float:
    """Each scheduled delay is multiplied by a random factor in [1 - jitter, 1 + jitter]."""
    return float(_get("OPTIO_WEBHOOK_RETRY_JITTER", 0.2))


def retry_after_bounds() -> tuple[float, float]:
    """A receiver's Retry-After is honoured, clamped to these seconds."""
    low, high = _get("OPTIO_WEBHOOK_RETRY_AFTER_BOUNDS", (5, 36000))
    return float(low), float(high)


def timeout() -> float:
    return float(_get("OPTIO_WEBHOOK_TIMEOUT", 15))


def connect_timeout() -> float:
    return float(_get("OPTIO_WEBHOOK_CONNECT_TIMEOUT", 3))


def lease() -> timedelta:
    """How long a claimed delivery belongs to its worker. Longer than any request can take, so a
    lease only runs out when the worker died mid-request; then the sweeper hands it to another."""
    return timedelta(seconds=float(_get("OPTIO_WEBHOOK_LEASE", timeout() + connect_timeout() + 30)))


def sweep_interval() -> float:
    return float(_get("OPTIO_WEBHOOK_SWEEP_INTERVAL", 10))


def sweep_grace() -> timedelta:
    """A due delivery is re-enqueued by the sweeper only once it has waited this long: shorter
    waits are normally just the queue, and re-enqueueing them would only make duplicates."""
    return timedelta(seconds=float(_get("OPTIO_WEBHOOK_SWEEP_GRACE", 60)))


def countdown_max() -> float:
    """Retries due sooner than this are also queued with a countdown; later ones wait for the sweeper
    (long ETAs in Redis outlive the visibility timeout and come back as duplicates)."""
    return float(_get("OPTIO_WEBHOOK_COUNTDOWN_MAX", 60))


def disable_after() -> timedelta:
    """An endpoint whose deliveries have all failed for this long is disabled."""
    return timedelta(days=float(_get("OPTIO_WEBHOOK_DISABLE_AFTER_DAYS", 5)))


def retention() -> timedelta:
    return timedelta(days=float(_get("OPTIO_WEBHOOK_RETENTION_DAYS", 30)))


def purge_batch() -> int:
    return int(_get("OPTIO_WEBHOOK_PURGE_BATCH", 500))


def batch_size() -> int:
    """Due deliveries one drain job claims and sends at once (webhooks/batch.py). Each job costs a
    broker message, a claim and a record statement whatever its size: 100 gave 1.2-1.5x the
    throughput of 32 in bench_webhooks."""
    return int(_get("OPTIO_WEBHOOK_BATCH_SIZE", 100))


def send_threads() -> int:
    """Most sender threads per worker process, shared by its drain jobs (started as needed): one
    per lane, and a slow endpoint's lanes grow to integrations/http.py's MAX_LANES per batch.
    A request that finds no thread within its timeout is not sent and retries on the schedule,
    so a batch always settles well inside its lease."""
    return int(_get("OPTIO_WEBHOOK_SEND_THREADS", 256))


def lanes() -> int:
    """Connections a drain starts with per endpoint, each sending one request after another;
    more are added while requests wait (integrations/http.py, GROW_AFTER). More lanes cost CPU
    (threads contend for the interpreter) for little gain on an endpoint that answers quickly."""
    return int(_get("OPTIO_WEBHOOK_LANES", 2))


def straggler_wait() -> float:
    """Seconds a drain waits for its whole batch before recording what has finished, then the rest."""
    return float(_get("OPTIO_WEBHOOK_STRAGGLER_WAIT", 1.0))
