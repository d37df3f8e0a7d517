"""Where the client keeps ETags and cached bodies between requests.

Two stores share one interface (`get(scope, key)` / `put(scope, key, url, page)`):

- `DbStore` reads and writes `CachedResponse` rows as each request is made; it is the
  default and fits code that runs on one thread (ticket sync, assignment).
- `PreloadedStore` loads every row of the listings it is told about with one query up
  front, serves worker threads from memory and hands what changed to `flush()` afterwards:
  the Issues fan-out uses it so that no worker thread touches the database. Outside a
  transaction `flush()` writes behind, on one writer thread, so a response does not wait for
  megabytes of cache rows to reach the database; inside one it writes in that transaction.

Parsed bodies are memoised per (key, ETag) in this process, so a 304 costs neither a body
read nor a JSON parse. The memo hands out the same objects each time: treat them as read-only.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import close_old_connections, connection
from django.utils import timezone

# A page of 100 issues is ~275 KB of JSON; orjson parses it in half the time json does,
# and parsing is most of the CPU a cold Issues page costs.
from orjson import loads

from integrations.github.models import CachedResponse

log = logging.getLogger(__name__)

# Bytes of raw JSON whose parsed form stays in memory; 20 repositories of 100 issues is ~5 MB.
MEMO_MAX_BYTES = 64 * 1024 * 1024
# A 304 refreshes `checked_at` at most this often, so warm reads stay reads.
TOUCH_INTERVAL = timedelta(hours=1)


@dataclass
class CachedPage:
    etag: str
    link: str
    body: bytes | None = None
    checked_at: datetime | None = None
    data: object = field(default=None, repr=False)


def fingerprint(token: str) -> str:
    """A short one-way tag of the token: cached answers are never shared between tokens."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def cache_key(token: str, url: str) -> str:
    return hashlib.sha256(f"{fingerprint(token)} GET {url}".encode()).hexdigest()


def scope_key(token: str, listing: str) -> str:
    """`listing` is the URL without its page number: every page of one listing shares a scope."""
    return hashlib.sha256(f"{fingerprint(token)} {listing}".encode()).hexdigest()


class _Memo:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], tuple[int, object]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str, etag: str):
        with self._lock:
            hit = self._items.get((key, etag))
            if hit is None:
                return None
            self._items.move_to_end((key, etag))
            return hit[1]

    def put(self, key: str, etag: str, size: int, data) -> None:
        with self._lock:
            old = self._items.pop((key, etag), None)
            if old:
                self._size -= old[0]
            self._items[(key, etag)] = (size, data)
            self._size += size
            while self._size > self.max_bytes and self._items:
                _, (dropped, _) = self._items.popitem(last=False)
                self._size -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0


memo = _Memo(MEMO_MAX_BYTES)


def parsed(key: str, page: CachedPage):
    """The JSON of a cached page, parsed at most once per (key, ETag) in this process."""
    if page.data is not None:
        return page.data
    data = memo.get(key, page.etag)
    if data is None:
        body = page.body if page.body is not None else _load_body(key)
        data = loads(body or b"null")
        memo.put(key, page.etag, len(body or b""), data)
    page.data = data
    return data


def _load_body(key: str) -> bytes:
    row = CachedResponse.objects.filter(key=key).values_list("body", flat=True).first()
    return (row or "").encode()


def _rows(pages: dict[str, tuple[str, str, CachedPage]]) -> list[CachedResponse]:
    now = timezone.now()
    return [
        CachedResponse(
            key=key,
            scope=scope,
            url=url,
            etag=page.etag,
            link=page.link,
            body=(page.body or b"").decode("utf-8", errors="replace"),
            fetched_at=now,
            checked_at=now,
        )
        for key, (scope, url, page) in pages.items()
    ]


def _upsert(pages: dict[str, tuple[str, str, CachedPage]]) -> None:
    if pages:
        CachedResponse.objects.bulk_create(
            _rows(pages),
            update_conflicts=True,
            unique_fields=["key"],
            update_fields=["scope", "url", "etag", "link", "body", "fetched_at", "checked_at"],
        )


class DbStore:
    """Reads and writes rows as requests are made (single-threaded callers)."""

    def get(self, scope: str, key: str) -> CachedPage | None:
        row = CachedResponse.objects.filter(key=key).values("etag", "link", "checked_at").first()
        return CachedPage(row["etag"], row["link"], checked_at=row["checked_at"]) if row else None

    def put(self, scope: str, key: str, url: str, page: CachedPage) -> None:
        _upsert({key: (scope, url, page)})

    def revalidated(self, key: str, page: CachedPage) -> None:
        if page.checked_at is None or timezone.now() - page.checked_at > TOUCH_INTERVAL:
            CachedResponse.objects.filter(key=key).update(checked_at=timezone.now())


class PreloadedStore:
    """Loaded up front on the calling thread; worker threads only read and record in memory."""

    def __init__(self, scopes: list[str]):
        self._pages: dict[str, CachedPage] = {}
        self._dirty: dict[str, tuple[str, str, CachedPage]] = {}
        self._touched: set[str] = set()
        self._lock = threading.Lock()
        rows = list(CachedResponse.objects.filter(scope__in=scopes).values_list("key", "etag", "link", "checked_at"))
        for key, etag, link, checked_at in rows:
            # Holding the parsed data here keeps it even if the memo drops it before a worker asks.
            self._pages[key] = CachedPage(etag, link, checked_at=checked_at, data=memo.get(key, etag))
        self._pages.update(writer.pending(scopes))  # written behind, not in the database yet
        # Bodies are read only for pages this process has not parsed yet (a cold process).
        missing = [key for key, page in self._pages.items() if page.data is None]
        if missing:
            for key, body in CachedResponse.objects.filter(key__in=missing).values_list("key", "body"):
                self._pages[key].body = body.encode()

    def get(self, scope: str, key: str) -> CachedPage | None:
        with self._lock:
            return self._pages.get(key)

    def put(self, scope: str, key: str, url: str, page: CachedPage) -> None:
        with self._lock:
            self._pages[key] = page
            self._dirty[key] = (scope, url, page)

    def revalidated(self, key: str, page: CachedPage) -> None:
        if page.checked_at is None or timezone.now() - page.checked_at > TOUCH_INTERVAL:
            with self._lock:
                self._touched.add(key)

    def flush(self) -> None:
        """Persist what the worker threads recorded (call on the thread that owns the connection)."""
        with self._lock:
            dirty, touched = dict(self._dirty), set(self._touched) - set(self._dirty)
            self._dirty.clear()
            self._touched.clear()
        if dirty or touched:
            writer.submit(dirty, touched)


def _write(dirty: dict[str, tuple[str, str, CachedPage]], touched: set[str]) -> None:
    _upsert(dirty)
    if touched:
        CachedResponse.objects.filter(key__in=touched).update(checked_at=timezone.now())


class _Writer:
    """One thread that writes cache rows behind the requests that fetched them.

    Inside a transaction (a test, a caller's atomic block) rows are written at once, in it.
    A full queue also writes at once, so memory stays bounded. Losing a queued write (the
    process exits) costs one unconditional request later, nothing more: it is a cache.
    """

    def __init__(self, max_jobs: int = 32):
        self._queue: queue.Queue = queue.Queue(maxsize=max_jobs)
        self._pending: dict[str, tuple[str, str, CachedPage]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, dirty: dict[str, tuple[str, str, CachedPage]], touched: set[str]) -> None:
        if connection.in_atomic_block:
            _write(dirty, touched)
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="github-etag-writer", daemon=True)
                self._thread.start()
            try:
                self._queue.put_nowait((dirty, touched))
            except queue.Full:
                pass
            else:
                self._pending.update(dirty)
                return
        _write(dirty, touched)

    def pending(self, scopes: list[str]) -> dict[str, CachedPage]:
        wanted = set(scopes)
        with self._lock:
            return {key: page for key, (scope, _, page) in self._pending.items() if scope in wanted}

    def drain(self) -> None:
        """Wait until every queued write is in the database (tests, benchmarks, shutdown)."""
        self._queue.join()

    def _run(self) -> None:
        while True:
            dirty, touched = self._queue.get()
            try:
                close_old_connections()
                _write(dirty, touched)
            except Exception:
                log.exception("Writing %d cached GitHub responses failed", len(dirty))
            finally:
                with self._lock:
                    for key, entry in dirty.items():
                        if self._pending.get(key) is entry:
                            del self._pending[key]
                if self._queue.empty():
                    connection.close()  # an idle writer holds no database connection
                self._queue.task_done()


writer = _Writer()


def prune(older_than: timedelta = timedelta(days=7)) -> int:
    """Delete cached answers nobody has asked for in a while (for example old `since=` listings)."""
    deleted, _ = CachedResponse.objects.filter(checked_at__lt=timezone.now() - older_than).delete()
    return deleted
