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
from collections.abc import Callable
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
# Cache rows are written this long after they are queued. Writing a cold Issues page's rows
# (~5 MB into SQLite) took 30 ms of CPU; started at once, it shared the two cores with the
# next request and made a warm page right after a cold one ~14 ms slower (bench_issues).
# Jobs queued meanwhile are written together. `drain()` skips the wait.
WRITE_DELAY = 0.5


@dataclass(frozen=True)
class Shape:
    """How a page's JSON is decoded. Callers that need different views of the same URL
    (the Issues view wants a few fields, ticket sync the whole objects) memoise separately."""

    name: str
    decode: Callable[[bytes], object]


JSON = Shape("json", loads)


@dataclass
class CachedPage:
    etag: str
    link: str
    body: bytes | None = None
    checked_at: datetime | None = None
    data: object = field(default=None, repr=False)
    shape: str = ""  # the Shape `data` was decoded with


def fingerprint(token: str) -> str:
    """A short one-way tag of the token: cached answers are never shared between tokens."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def cache_key(token: str, url: str) -> str:
    return hashlib.sha256(f"{fingerprint(token)} GET {url}".encode()).hexdigest()


def scope_key(token: str, listing: str) -> str:
    """`listing` is the URL without its page number: every page of one listing shares a scope."""
    return hashlib.sha256(f"{fingerprint(token)} {listing}".encode()).hexdigest()


class _Memo:
    """The newest parsed page per (URL key, shape) this process has seen, bounded by raw size.

    It also answers "which pages of these listings do we know?", so a warm listing needs no
    database read at all. A page known here with an older ETag than another process stored
    is still safe to revalidate: GitHub answers 200 with the new body, never a wrong 304.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], tuple[str, int, CachedPage]] = OrderedDict()
        self._by_scope: dict[tuple[str, str], set[str]] = {}
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str, etag: str, shape: str = JSON.name):
        with self._lock:
            hit = self._items.get((key, shape))
            if hit is None or hit[2].etag != etag:
                return None
            self._items.move_to_end((key, shape))
            return hit[2].data

    def put(self, scope: str, key: str, page: CachedPage, size: int) -> None:
        """`page` must carry its decoded `data` and `shape`; its body is not kept."""
        entry = CachedPage(page.etag, page.link, checked_at=page.checked_at, data=page.data, shape=page.shape)
        with self._lock:
            self._drop((key, page.shape))
            self._items[(key, page.shape)] = (scope, size, entry)
            self._by_scope.setdefault((scope, page.shape), set()).add(key)
            self._size += size
            while self._size > self.max_bytes and self._items:
                self._drop(next(iter(self._items)))

    def touched(self, key: str, shape: str, checked_at: datetime) -> None:
        with self._lock:
            hit = self._items.get((key, shape))
            if hit is not None:
                hit[2].checked_at = checked_at

    def pages(self, scopes: list[str], shape: str) -> tuple[dict[str, CachedPage], set[str]]:
        """(copies of the known pages of `scopes`, the scopes they cover)."""
        found, covered = {}, set()
        with self._lock:
            for scope in scopes:
                for key in self._by_scope.get((scope, shape), ()):
                    page = self._items[(key, shape)][2]
                    found[key] = CachedPage(
                        page.etag, page.link, checked_at=page.checked_at, data=page.data, shape=shape
                    )
                    covered.add(scope)
        return found, covered

    def _drop(self, item: tuple[str, str]) -> None:
        old = self._items.pop(item, None)
        if old is not None:
            scope, size, _ = old
            self._size -= size
            keys = self._by_scope.get((scope, item[1]))
            if keys is not None:
                keys.discard(item[0])
                if not keys:
                    del self._by_scope[(scope, item[1])]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._by_scope.clear()
            self._size = 0


memo = _Memo(MEMO_MAX_BYTES)


def parsed(scope: str, key: str, page: CachedPage, shape: Shape = JSON):
    """The JSON of a cached page, decoded at most once per (key, ETag, shape) in this process."""
    if page.data is not None and page.shape == shape.name:
        return page.data
    data = memo.get(key, page.etag, shape.name)
    if data is not None:
        page.data, page.shape = data, shape.name
        return data
    body = page.body if page.body is not None else _load_body(key)
    page.data, page.shape = shape.decode(body or b"null"), shape.name
    memo.put(scope, key, page, len(body or b""))
    return page.data


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

    shape = JSON

    def get(self, scope: str, key: str) -> CachedPage | None:
        row = CachedResponse.objects.filter(key=key).values("etag", "link", "checked_at").first()
        return CachedPage(row["etag"], row["link"], checked_at=row["checked_at"]) if row else None

    def put(self, scope: str, key: str, url: str, page: CachedPage) -> None:
        _upsert({key: (scope, url, page)})

    def revalidated(self, key: str, page: CachedPage) -> None:
        if page.checked_at is None or timezone.now() - page.checked_at > TOUCH_INTERVAL:
            CachedResponse.objects.filter(key=key).update(checked_at=timezone.now())
            memo.touched(key, self.shape.name, timezone.now())


class PreloadedStore:
    """Loaded up front on the calling thread; worker threads only read and record in memory."""

    def __init__(self, scopes: list[str], shape: Shape = JSON):
        self._dirty: dict[str, tuple[str, str, CachedPage]] = {}
        self._touched: set[str] = set()
        self._lock = threading.Lock()
        self.shape = shape
        # Listings this process has read before come from memory, with their parsed data;
        # only the others cost a query (a fresh process, or pages the memo let go).
        self._pages, known = memo.pages(scopes, shape.name)
        unknown = [scope for scope in scopes if scope not in known]
        if unknown:
            rows = CachedResponse.objects.filter(scope__in=unknown).values_list("key", "etag", "link", "checked_at")
            for key, etag, link, checked_at in rows:
                self._pages[key] = CachedPage(etag, link, checked_at=checked_at)
            self._pages.update(writer.pending(unknown))  # written behind, not in the database yet
        # Bodies are read only for pages this process has not parsed yet (a cold process).
        missing = [key for key, page in self._pages.items() if page.data is None or page.shape != shape.name]
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
            memo.touched(key, self.shape.name, timezone.now())

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
    Until written, queued pages are served by `pending()` and this process's memo.
    """

    def __init__(self, max_jobs: int = 32):
        self._queue: queue.Queue = queue.Queue(maxsize=max_jobs)
        self._pending: dict[str, tuple[str, str, CachedPage]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._hurry = threading.Event()

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
        self._hurry.set()
        try:
            self._queue.join()
        finally:
            self._hurry.clear()

    def _run(self) -> None:
        while True:
            jobs = [self._queue.get()]
            self._hurry.wait(WRITE_DELAY)
            while True:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            dirty: dict[str, tuple[str, str, CachedPage]] = {}
            touched: set[str] = set()
            for job_dirty, job_touched in jobs:  # in order: a later page of a key wins
                dirty.update(job_dirty)
                touched |= job_touched
            try:
                close_old_connections()
                _write(dirty, touched - set(dirty))
            except Exception:
                log.exception("Writing %d cached GitHub responses failed", len(dirty))
            finally:
                with self._lock:
                    for job_dirty, _ in jobs:
                        for key, entry in job_dirty.items():
                            if self._pending.get(key) is entry:
                                del self._pending[key]
                if self._queue.empty():
                    connection.close()  # an idle writer holds no database connection
                for _ in jobs:
                    self._queue.task_done()


writer = _Writer()


def prune(older_than: timedelta = timedelta(days=7)) -> int:
    """Delete cached answers nobody has asked for in a while (for example old `since=` listings)."""
    deleted, _ = CachedResponse.objects.filter(checked_at__lt=timezone.now() - older_than).delete()
    return deleted
