"""The one outbound HTTP door. Every request Optio makes to the outside world goes through here.

What it guarantees, so callers do not have to:
- http and https only; the host is resolved once, every address is checked against
  private, loopback, link-local (cloud metadata), CGNAT, multicast, reserved and
  unspecified ranges (IPv4-mapped IPv6 included), and the connection is made to the
  checked address (no second DNS lookup an attacker could change in between);
- TLS is still verified against the host name;
- connect timeout 3 s and an overall deadline (15 s by default) that bounds the whole
  exchange, a server dripping its headers or body byte by byte included (a watchdog
  thread shuts the socket down when the deadline passes); response bodies are capped;
- redirects are never followed: a 3xx is returned to the caller as it is;
- connections are pooled per (scheme, host, port, address), with a bounded number of pools.

`OPTIO_ALLOW_PRIVATE_URLS=1` lets requests reach private addresses (development, tests).
"""

from __future__ import annotations

import functools
import heapq
import http.client
import ipaddress
import itertools
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import httptools
import urllib3
import urllib3.connection
from django.conf import settings
from urllib3.util.wait import wait_for_read

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0
TOTAL_TIMEOUT = 15.0
MAX_RESPONSE_BYTES = 1024 * 1024
USER_AGENT = "Optio/1.0 (+self-hosted)"

MAX_POOLS = 256
# Connections kept per destination: the Issues view fetches up to 20 repositories at once from
# one GitHub host; a smaller pool discards (and later re-opens) the extra keep-alive connections.
POOL_SIZE = 32

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00\r\n]")
_BAD_URL = re.compile(r"[\x00-\x20\x7f]")
_OURS = {"host", "content-length", "transfer-encoding", "connection"}
_PATH_SAFE = "/?&=%:@!$'()*+,;~#[]"
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundError(Exception):
    """A request could not be made or completed. `reason` is a sentence a person can act on."""

    kind = "error"

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class InvalidUrl(OutboundError):
    kind = "invalid_url"


class BlockedDestination(OutboundError):
    kind = "blocked"


class PayloadTooLarge(OutboundError):
    kind = "payload_too_large"


class InvalidHeader(OutboundError):
    kind = "invalid_header"


class ConnectFailed(OutboundError):
    kind = "connect_error"


class Timeout(OutboundError):
    kind = "timeout"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float
    truncated: bool = False
    address: str = ""
    _json: object = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        import json

        return json.loads(self.body)


def _blocked_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address reach that address: check what they embed.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _blocked_reason(embedded)
        if ip.teredo is not None:
            return "a Teredo tunnel address"
        if ip.is_site_local:
            return "a site-local address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (this includes cloud metadata services such as 169.254.169.254)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "a carrier-grade NAT address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private network address"
    if not ip.is_global:
        return "a reserved address"
    return None


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    address: str
    path: str


def resolve(url: str, *, allow_private: bool | None = None) -> Target:
    """Validate `url` and pick the address to connect to, or raise InvalidUrl / BlockedDestination."""
    if allow_private is None:
        allow_private = settings.OPTIO_ALLOW_PRIVATE_URLS
    if not isinstance(url, str) or not url:
        raise InvalidUrl("A URL is required.")
    if _BAD_URL.search(url):
        raise InvalidUrl(f"{url!r} contains spaces or control characters; percent-encode them.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidUrl(f"{url!r} is not a valid URL ({exc}).") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidUrl(f"Only http:// and https:// URLs are allowed, not {parts.scheme or 'no scheme'!r}.")
    host = parts.hostname
    if not host:
        raise InvalidUrl(f"{url!r} has no host name.")
    if parts.username or parts.password:
        raise InvalidUrl("URLs with a user name or password in them are not allowed; use headers or a secret.")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise InvalidUrl(f"The host {host!r} could not be resolved.") from None
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise InvalidUrl(f"The host {host!r} has no addresses.")
    if not allow_private:
        for ip in addresses:
            reason = _blocked_reason(ip)
            if reason:
                raise BlockedDestination(
                    f"{host} resolves to {ip}, {reason}; Optio does not send requests there "
                    "(set OPTIO_ALLOW_PRIVATE_URLS=1 to allow it on a trusted network)."
                )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, host, port, str(addresses[0]), path)


def _host_header(target: Target) -> str:
    """The Host header for `target`: IPv6 literals bracketed, IDN names as punycode, the port
    only when it is not the scheme's default."""
    host = target.host if target.host.isascii() else target.host.encode("idna").decode()
    host = f"[{host}]" if ":" in host else host
    return host if target.port == (443 if target.scheme == "https" else 80) else f"{host}:{target.port}"


def check_url(url: str) -> None:
    """Raise InvalidUrl or BlockedDestination if `url` may not be used as a destination."""
    resolve(url)


class _Watchdog:
    """One daemon thread that shuts down the socket of any request that outlives its deadline.

    Socket timeouts bound each read, not the exchange: a server dripping one byte every few
    seconds would otherwise hold a worker for as long as it likes.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, socket.socket] = {}
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float) -> int:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
                self._thread.start()
            token = next(self._ids)
            self._live[token] = sock
            heapq.heappush(self._heap, (deadline, token))
            if self._heap[0][1] == token:
                self._cond.notify()
            return token

    def cancel(self, token: int | None) -> None:
        if token is not None:
            with self._cond:
                self._live.pop(token, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, token = heapq.heappop(self._heap)
                    sock = self._live.pop(token, None)
                    if sock is not None:
                        try:
                            # The plain socket's shutdown, also for TLS sockets: it wakes the blocked
                            # reader without tearing down SSL state under its feet.
                            socket.socket.shutdown(sock, socket.SHUT_RDWR)
                        except OSError:
                            pass
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


_watchdog = _Watchdog()
_local = threading.local()


class _DeadlineMixin:
    def getresponse(self, *args, **kwargs):
        deadline = getattr(_local, "deadline", None)
        if deadline is not None and self.sock is not None:
            _local.watch = _watchdog.watch(self.sock, deadline)
        return super().getresponse(*args, **kwargs)


class _HTTPConnection(_DeadlineMixin, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineMixin, urllib3.connection.HTTPSConnection):
    pass


_pools: OrderedDict[tuple, urllib3.HTTPConnectionPool] = OrderedDict()
_pools_lock = threading.Lock()


def _pool(target: Target) -> urllib3.HTTPConnectionPool:
    key = (target.scheme, target.host, target.port, target.address)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is not None:
            _pools.move_to_end(key)
            return pool
        common = {"maxsize": POOL_SIZE, "block": False, "retries": False}
        if target.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                target.address, target.port, server_hostname=target.host, assert_hostname=target.host, **common
            )
            pool.ConnectionCls = _HTTPSConnection
        else:
            pool = urllib3.HTTPConnectionPool(target.address, target.port, **common)
            pool.ConnectionCls = _HTTPConnection
        _pools[key] = pool
        while len(_pools) > MAX_POOLS:  # DNS answers change; do not keep every address ever seen
            _pools.popitem(last=False)[1].close()
        return pool


def _after_fork_in_child() -> None:
    # A forked worker child must not share the parent's sockets, locks or watchdog thread.
    global _watchdog, _pools_lock, _idle_lock
    _watchdog = _Watchdog()
    _pools.clear()
    _pools_lock = threading.Lock()
    _idle.clear()
    _idle_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = TOTAL_TIMEOUT,
    connect_timeout: float = CONNECT_TIMEOUT,
    max_body: int | None = None,
    max_response: int = MAX_RESPONSE_BYTES,
) -> Response:
    """Make one request. Never follows redirects; raises OutboundError subclasses for failures
    that produced no HTTP response (blocked, refused, timed out)."""
    if max_body is not None and body is not None and len(body) > max_body:
        raise PayloadTooLarge(f"The payload is {len(body)} bytes; the limit is {max_body} bytes.")
    target = resolve(url)
    send_headers = {"User-Agent": USER_AGENT, "Host": _host_header(target)}
    send_headers.update(headers or {})
    started = time.monotonic()
    deadline = started + timeout
    _local.deadline, _local.watch = deadline, None
    try:
        return _exchange(target, method, body, send_headers, started, deadline, timeout, connect_timeout, max_response)
    finally:
        _watchdog.cancel(_local.watch)
        _local.deadline = _local.watch = None


def _exchange(
    target: Target,
    method: str,
    body: bytes | None,
    headers: dict[str, str],
    started: float,
    deadline: float,
    timeout: float,
    connect_timeout: float,
    max_response: int,
) -> Response:
    def late() -> bool:
        return time.monotonic() >= deadline

    try:
        raw = _pool(target).urlopen(
            method,
            target.path,
            body=body,
            headers=headers,
            redirect=False,
            retries=False,
            assert_same_host=False,
            preload_content=False,
            timeout=urllib3.Timeout(connect=min(connect_timeout, timeout), read=timeout),
        )
    except urllib3.exceptions.NewConnectionError as exc:  # before ConnectTimeoutError: it subclasses it
        raise ConnectFailed(f"Could not connect to {target.host}:{target.port} ({_cause(exc)}).") from None
    except urllib3.exceptions.ConnectTimeoutError:
        raise Timeout(f"Connecting to {target.host} timed out after {min(connect_timeout, timeout):g} s.") from None
    except urllib3.exceptions.ReadTimeoutError:
        raise Timeout(f"{target.host} did not answer within {timeout:g} s.") from None
    except urllib3.exceptions.SSLError as exc:
        if late():
            raise Timeout(f"{target.host} did not answer within {timeout:g} s.") from None
        raise ConnectFailed(f"TLS with {target.host} failed ({_cause(exc)}).") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if late():
            raise Timeout(f"{target.host} did not answer within {timeout:g} s.") from None
        raise ConnectFailed(f"The request to {target.host} failed ({_cause(exc)}).") from None

    # A body whose announced length fits is read in one call: urllib3's read() costs tens of
    # microseconds per call, which added up to a third of a 275 KB GitHub page's client CPU
    # in 16 KiB steps. The watchdog still bounds the call; an unknown length reads in steps.
    truncated = False
    try:
        body, truncated = _read_capped(
            lambda n: raw.read(n, decode_content=True),
            _read_step(raw, max_response),
            max_response,
            deadline,
            target,
            timeout,
        )
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if late() or isinstance(exc, urllib3.exceptions.ReadTimeoutError):
            raise Timeout(f"{target.host} did not finish its response within {timeout:g} s.") from None
        raise ConnectFailed(f"Reading the response from {target.host} failed ({_cause(exc)}).") from None
    finally:
        if truncated or late():
            raw.close()  # an unread remainder (or a socket the watchdog shut) would poison the pool
        else:
            raw.release_conn()
    return Response(
        status=raw.status,
        headers={k.lower(): v for k, v in raw.headers.items()},
        body=body,
        elapsed=time.monotonic() - started,
        truncated=truncated,
        address=target.address,
    )


def _read_step(raw, max_response: int) -> int:
    length = raw.headers.get("content-length", "")
    if length.isdigit() and not raw.headers.get("content-encoding") and 0 < int(length) <= max_response:
        return int(length) + 1  # one more byte than announced: a longer body is still noticed
    return 16384


def _cause(exc: Exception) -> str:
    text = str(exc.__cause__ or exc)
    if "Connection refused" in text:
        return "connection refused"
    return text.split(": ", 1)[-1][:200]


# --- many small requests at once: webhook drains --------------------------------------------
#
# Why a second path: a drain sends dozens of small POSTs, mostly to few endpoints. Through
# `request` each costs a thread hand-off and urllib3's pool and response machinery: measured
# ~0.44 ms of CPU a request with a thread each, against ~0.07 ms here, where a few lanes per
# destination send one request after another on kept-alive sockets (the request written in
# one piece, the response parsed by httptools' llhttp). The guarantees are the same as
# `request`'s: the URL is resolved and checked once per batch, the connection goes to the
# checked address, TLS is verified against the host name, the same connect timeout and overall
# deadline (the same watchdog), response bodies capped, redirects never followed, and header
# values that would split the request refused.


@dataclass(frozen=True)
class Outgoing:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Result:
    """How one request of `send_all` ended: a response, or the error that prevented one."""

    response: Response | None
    error: OutboundError | None
    started: float  # time.time() when it began
    elapsed: float  # seconds


LANES_PER_TARGET = 2
# While requests to a destination are still waiting, its lanes double every GROW_AFTER seconds
# (driven by the caller's Sending.wait), up to MAX_LANES: a slow endpoint gets more connections
# at a measured pace rather than one per request at once, and a hanging one holds at most
# MAX_LANES requests. A request that has not started within its timeout is not sent at all, so
# a batch never takes longer than twice the timeout (a webhook claim's lease allows for that).
GROW_AFTER = 0.25
MAX_LANES = 16


def send_all(
    requests: list[Outgoing],
    *,
    executor=None,
    lanes: int = LANES_PER_TARGET,
    method: str = "POST",
    timeout: float = TOTAL_TIMEOUT,
    connect_timeout: float = CONNECT_TIMEOUT,
    max_body: int | None = None,
    max_response: int = MAX_RESPONSE_BYTES,
) -> Sending:
    """Send `requests` concurrently over kept-alive connections; their Results fill in, in order.

    Requests to one destination share `lanes` connections at first, each lane sending one
    request after another; see GROW_AFTER. With no `executor` everything runs in the calling
    thread, one at a time, and every Result is there on return.
    """
    if method == "HEAD":  # its response's Content-Length describes a body that never comes
        raise ValueError("send_all does not send HEAD requests")
    sending = Sending(len(requests))
    opts = _Options(method, timeout, connect_timeout, max_response)
    queues: dict[tuple, deque] = {}
    resolved: dict[str, Target | OutboundError] = {}
    for index, item in enumerate(requests):
        if max_body is not None and len(item.body) > max_body:
            too_large = PayloadTooLarge(f"The payload is {len(item.body)} bytes; the limit is {max_body} bytes.")
            sending.finish(index, Result(None, too_large, time.time(), 0.0))
            continue
        target = resolved.get(item.url)
        if target is None:  # checked once per batch, and again in every batch (DNS changes)
            try:
                target = resolve(item.url)
            except OutboundError as exc:
                target = exc
            resolved[item.url] = target
        if isinstance(target, OutboundError):
            sending.finish(index, Result(None, target, time.time(), 0.0))
            continue
        queues.setdefault(_key(target), deque()).append((target, item, index))
    for queue in queues.values():
        group = _Lanes(queue, opts, executor, sending)
        if executor is None:
            group.run()
        else:
            sending.groups.append(group)
            group.start(max(lanes, 1))
    return sending


class Sending:
    """The Results of one send_all as they come in: `results[i]` is None until request i ends.

    One event for the whole batch rather than a Future per request: Futures cost a condition
    variable each, a measurable share of a small request's CPU.
    """

    def __init__(self, count: int) -> None:
        self.results: list[Result | None] = [None] * count
        self.groups: list[_Lanes] = []
        self._left = count
        self._lock = threading.Lock()
        self._all_done = threading.Event()
        if not count:
            self._all_done.set()

    def finish(self, index: int, result: Result) -> None:
        self.results[index] = result
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._all_done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every request has ended (True) or `timeout` has passed (False), adding
        lanes to destinations whose requests are still waiting as it goes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = GROW_AFTER if deadline is None else min(GROW_AFTER, deadline - time.monotonic())
            if self._all_done.wait(max(step, 0)):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            for group in self.groups:
                group.grow()


@dataclass(frozen=True)
class _Options:
    method: str
    timeout: float
    connect_timeout: float
    max_response: int


class _Lanes:
    """The requests of one batch to one destination, taken in turn by its lanes."""

    def __init__(self, queue: deque, opts: _Options, executor, sending: Sending) -> None:
        self.queue, self.opts, self.executor, self.sending = queue, opts, executor, sending
        self.began = time.monotonic()
        self.lanes = 0
        self._lock = threading.Lock()

    def start(self, count: int) -> None:
        with self._lock:
            count = min(count, len(self.queue), MAX_LANES - self.lanes)
            self.lanes += max(count, 0)
        for _ in range(count):
            try:
                self.executor.submit(self.run)
            except RuntimeError:  # the pool is shut down (the process is stopping): send from here
                self.run()

    def grow(self) -> None:
        if self.queue:
            self.start(self.lanes)

    def run(self) -> None:
        while True:
            try:
                target, item, index = self.queue.popleft()  # deque: safe across threads
            except IndexError:
                return
            waited = time.monotonic() - self.began
            if waited > self.opts.timeout:
                # Every lane is held by slow requests. Starting this one now could take it past
                # the time its caller allows for the batch (a webhook claim's lease).
                late = Timeout(f"Not sent: it waited {waited:.0f} s behind slow requests to {target.host}.")
                self.sending.finish(index, Result(None, late, time.time(), 0.0))
                continue
            try:
                result = _send(target, item, self.opts)
            except Exception as exc:  # a bug must not leave the caller waiting for ever
                log.exception("sending to %s failed unexpectedly", target.host)
                result = Result(None, OutboundError(f"Optio failed to send it ({exc!r})."), time.time(), 0.0)
            self.sending.finish(index, result)


class _Conn:
    """A kept-alive connection to the checked address, whatever the host name resolves to by now."""

    def __init__(self, target: Target, timeout: float) -> None:
        # Not socket.create_connection: the address is a checked literal, nothing to look up.
        sock = socket.socket(socket.AF_INET6 if ":" in target.address else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect((target.address, target.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if target.scheme == "https":
                sock = _tls_context().wrap_socket(sock, server_hostname=target.host)
        except BaseException:
            sock.close()
            raise
        self.sock: socket.socket | None = sock
        self.idle_since = 0.0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()  # the system's CAs (SSL_CERT_FILE honoured), as urllib3's


def _key(target: Target) -> tuple:
    return (target.scheme, target.host, target.port, target.address)


# Kept connections idle longer than this are not reused: servers close idle ones after a few
# seconds (5 s in Node, 60-75 s in load balancers and nginx), and reusing one as it closes fails.
IDLE_TIMEOUT = 4.0
_idle: OrderedDict[tuple, list[_Conn]] = OrderedDict()
_idle_lock = threading.Lock()


def _checkout(target: Target, connect_timeout: float) -> _Conn:
    key = _key(target)
    while True:
        with _idle_lock:
            stack = _idle.get(key)
            conn = stack.pop() if stack else None
        if conn is None:
            break
        # An idle connection the server closed (or wrote to) reads as ready: open another. One
        # idle for long may be closed by the server as the request goes out (Node's servers
        # keep connections 5 s), which would fail the request: open another then too.
        fresh = time.monotonic() - conn.idle_since < IDLE_TIMEOUT
        if fresh and conn.sock is not None and not wait_for_read(conn.sock, timeout=0):
            return conn
        conn.close()
    return _Conn(target, connect_timeout)


def _checkin(target: Target, conn: _Conn) -> None:
    key = _key(target)
    with _idle_lock:
        stack = _idle.setdefault(key, [])
        _idle.move_to_end(key)
        if len(stack) < POOL_SIZE:
            conn.idle_since = time.monotonic()
            stack.append(conn)
            conn = None
        while len(_idle) > MAX_POOLS:
            for old in _idle.popitem(last=False)[1]:
                old.close()
    if conn is not None:
        conn.close()


def _send(target: Target, item: Outgoing, opts: _Options) -> Result:
    started, clock = time.time(), time.monotonic()
    try:
        response = _exchange_on_connection(target, item, opts, clock)
    except OutboundError as exc:
        return Result(None, exc, started, time.monotonic() - clock)
    return Result(response, None, started, response.elapsed)


def _exchange_on_connection(target: Target, item: Outgoing, opts: _Options, clock: float) -> Response:
    deadline = clock + opts.timeout
    connect_timeout = min(opts.connect_timeout, opts.timeout)
    try:
        conn = _checkout(target, connect_timeout)
    except TimeoutError:
        raise Timeout(f"Connecting to {target.host} timed out after {connect_timeout:g} s.") from None
    except ssl.SSLError as exc:
        raise ConnectFailed(f"TLS with {target.host} failed ({_cause(exc)}).") from None
    except OSError as exc:
        raise ConnectFailed(f"Could not connect to {target.host}:{target.port} ({_cause(exc)}).") from None
    token = _watchdog.watch(conn.sock, deadline)
    reusable = False
    try:
        conn.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        conn.sock.sendall(_request_bytes(opts.method, target, item))
        reply = _read_reply(conn.sock, opts.max_response, deadline, target, opts.timeout)
        reusable = reply.keep_alive and not reply.truncated and time.monotonic() < deadline
    except (OSError, http.client.HTTPException) as exc:
        if time.monotonic() >= deadline or isinstance(exc, TimeoutError):
            raise Timeout(f"{target.host} did not answer within {opts.timeout:g} s.") from None
        raise ConnectFailed(f"The request to {target.host} failed ({_cause(exc)}).") from None
    finally:
        _watchdog.cancel(token)
        if not reusable:
            conn.close()
    _checkin(target, conn)
    headers: dict[str, str] = {}
    for raw_name, raw_value in reply.headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Response(
        status=reply.status,
        headers=headers,
        body=b"".join(reply.chunks),
        elapsed=time.monotonic() - clock,
        truncated=reply.truncated,
        address=target.address,
    )


# Limits on a response's head, as http.client's (a server must not make Optio buffer without end).
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
_HEAD_TOO_LARGE = f"the response headers are larger than {MAX_HEAD_BYTES} bytes"


class _Reply:
    """One HTTP response as httptools' parser (llhttp, in C) reports it; the body is cut at `cap`.

    Why not http.client: its header parsing goes through the email package and cost ~20 µs of
    a webhook's ~130 µs of sending CPU; llhttp does the same in ~2 µs (integrations/http.py's
    sending stage, bench_webhooks)."""

    __slots__ = (
        "parser",
        "cap",
        "status",
        "headers",
        "chunks",
        "size",
        "head_done",
        "complete",
        "truncated",
        "keep",
        "head_size",
    )

    def __init__(self, cap: int) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.cap, self.status, self.size, self.head_size = cap, 0, 0, 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.head_done = self.complete = self.truncated = self.keep = False

    def on_message_begin(self) -> None:
        if self.complete:  # bytes after the response (a second answer, or garbage): never reuse this connection
            self.keep = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        self.head_size += len(name) + len(value) + 4
        if self.head_size > MAX_HEAD_BYTES:
            raise http.client.HTTPException(_HEAD_TOO_LARGE)
        if len(self.headers) >= MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if not self.complete:
            self.status = self.parser.get_status_code()
            self.head_done = True

    def on_body(self, data: bytes) -> None:
        if self.complete:
            return
        room = self.cap - self.size
        if len(data) > room:
            data, self.truncated = data[:room], True
        if data:
            self.chunks.append(data)
            self.size += len(data)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if 100 <= self.status < 200:  # an interim response (100 Continue, 103 Early Hints): the real one follows
            self.headers, self.head_done = [], False
        else:
            # Read here: the parser resets itself for the next message once this returns.
            self.complete, self.keep = True, self.parser.should_keep_alive()

    @property
    def keep_alive(self) -> bool:
        return self.complete and self.keep

    def ends_at_close(self) -> bool:
        """Whether the body runs until the server closes the connection (no length, not chunked)."""
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names and self.status not in (204, 304)


def _read_reply(sock: socket.socket, cap: int, deadline: float, target: Target, timeout: float) -> _Reply:
    reply, received = _Reply(cap), 0
    while not (reply.complete or reply.truncated):
        if reply.head_done and time.monotonic() >= deadline:
            raise _still_sending(target, timeout)
        data = sock.recv(65536)
        if not data:
            if reply.head_done and reply.ends_at_close():
                reply.complete = True
                break
            if not received:
                raise http.client.RemoteDisconnected("Remote end closed connection without response")
            raise http.client.IncompleteRead(b"".join(reply.chunks))
        if not reply.head_done and received > MAX_HEAD_BYTES:  # one header still coming, without end
            raise http.client.HTTPException(_HEAD_TOO_LARGE)
        received += len(data)
        try:
            reply.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # raised by a callback above: its own message
            raise (exc.__context__ or exc) from None
        except httptools.HttpParserError as exc:
            if reply.complete or reply.truncated:  # garbage after what was kept: the connection goes
                reply.keep = False
                break
            raise http.client.HTTPException(f"a malformed response ({exc})") from None
    return reply


def _request_bytes(method: str, target: Target, item: Outgoing) -> bytes:
    """The request head and body in one piece. Written here rather than by http.client's
    HTTPConnection: one send instead of two, and a quarter less CPU per request (measured with
    100 small POSTs on one connection)."""
    # Non-ASCII in the path is percent-encoded, as urllib3 does for `request`.
    path = target.path if target.path.isascii() else quote(target.path, safe=_PATH_SAFE)
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {_host_header(target)}",
    ]
    given = {name.lower() for name in item.headers}
    if given & _OURS:
        raise InvalidHeader(f"{', '.join(sorted(given & _OURS))} is set by Optio, not by the caller.")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {USER_AGENT}")
    if "accept-encoding" not in given:
        lines.append("Accept-Encoding: identity")  # bodies are stored as received
    lines.append(f"Content-Length: {len(item.body)}")
    for name, value in item.headers.items():
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value) or not value.isascii():
            raise InvalidHeader(f"The header {name!r} cannot be sent: {value!r} is not a valid value.")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + item.body


def _still_sending(target: Target, timeout: float) -> Timeout:
    return Timeout(f"{target.host} was still sending its response after {timeout:g} s.")


def _read_capped(read, step: int, cap: int, deadline: float, target: Target, timeout: float) -> tuple[bytes, bool]:
    """A response body, `step` bytes a `read`, cut at `cap` bytes: (body, whether it was cut)."""
    chunks, size = [], 0
    while True:
        if time.monotonic() >= deadline:
            raise _still_sending(target, timeout)
        chunk = read(step)
        if not chunk:
            return b"".join(chunks), False
        if size + len(chunk) > cap:
            chunks.append(chunk[: cap - size])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
