"""Webhook receivers on 127.0.0.1 (ephemeral ports) for tests and benchmarks.

`Receiver` is a real threaded HTTP/1.1 server that records every request and answers it
according to a fault plan, so delivery code meets the failures real endpoints produce:

    with Receiver() as rx:
        rx.plan("503", "200")          # the first request gets 503, the next 200
        rx.plan_event("task.created", "500")  # the next task.created gets 500, whenever it comes
        url = rx.url                   # http://127.0.0.1:<port>/hook
        ...
        rx.wait_for(2)                 # block until two requests arrived
        rx.requests[0].headers["webhook-id"]

A mode can also be put in the path (`rx.url_for("hang")`), which keeps answering that way.
Modes: "200" (or any status), "429:<retry-after>", "302:<location>", "hang" (never answers),
"slow:<seconds>" (answers 200 after a pause), "drip:<seconds>" (sends headers, then one body
byte per pause), "huge:<bytes>" (a 200 with a body that large), "close" (drops the connection).

`FastReceiver` is a lean asyncio server for benchmarks: it answers 200 to everything and
remembers only the arrival time of each `webhook-id`; `GET /_receipts` hands them over.
Run it in its own process with `FastReceiver.spawn()` (`python -m tests.fakes.receiver --fast`).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple = ()
    at: float = field(default_factory=time.time)

    def json(self):
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class Receiver:
    def __init__(self, default: str = "200") -> None:
        self.default = default
        self.requests: list[Received] = []
        self._plan: list[str] = []
        self._event_plans: dict[str, list[str]] = {}
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # releases "hang" handlers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # what tests use --------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def url_for(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/mode/{mode}"

    def plan(self, *modes: str) -> None:
        """Answer the next requests with these modes, in order; then with the default."""
        with self._lock:
            self._plan.extend(modes)

    def plan_event(self, event: str, *modes: str) -> None:
        """Answer the next requests whose X-Optio-Event is `event` with these modes, before any
        other plan (deliveries sent together in a batch arrive in no fixed order)."""
        with self._lock:
            self._event_plans.setdefault(event, []).extend(modes)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} requests at the receiver, got {len(self.requests)}")
                self._lock.wait(left)
            return list(self.requests)

    # the server side -------------------------------------------------------------------
    def _next_mode(self, path: str, event: str | None = None) -> str:
        with self._lock:
            if path.startswith("/mode/"):
                return unquote(path[len("/mode/") :])
            if self._event_plans.get(event or ""):
                return self._event_plans[event].pop(0)
            return self._plan.pop(0) if self._plan else self.default

    def _record(self, item: Received) -> None:
        with self._lock:
            self.requests.append(item)
            self._lock.notify_all()

    def _handler_class(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                mode = receiver._next_mode(self.path, self.headers.get("X-Optio-Event"))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver._record(Received("POST", self.path, headers, body, self.client_address))
                self._answer(mode)

            do_PUT = do_POST

            def do_GET(self):
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver._record(Received("GET", self.path, headers, b"", self.client_address))
                self._answer(receiver._next_mode(self.path))

            def _send(self, status: int, body: bytes = b"ok", headers: dict | None = None) -> None:
                if status in (204, 304):
                    body = b""  # these never carry a body; sending one would desync the connection
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _answer(self, mode: str) -> None:
                kind, _, arg = mode.partition(":")
                if kind == "hang":
                    receiver._stop.wait(60)
                    self.close_connection = True
                elif kind == "close":
                    self.close_connection = True
                elif kind == "slow":
                    time.sleep(float(arg or 1))
                    self._send(200)
                elif kind == "drip":
                    pause = float(arg or 1)
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    try:
                        for _ in range(1000):
                            if receiver._stop.wait(pause):
                                break
                            self.wfile.write(b"x")
                            self.wfile.flush()
                    except OSError:
                        pass
                    self.close_connection = True
                elif kind == "huge":
                    size = int(arg or 5_000_000)
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    chunk = b"y" * 65536
                    try:
                        sent = 0
                        while sent < size:
                            part = chunk[: size - sent]
                            self.wfile.write(part)
                            sent += len(part)
                    except OSError:  # the client stopped reading, as it should
                        pass
                    self.close_connection = True
                elif kind == "429":
                    self._send(429, b"slow down", {"Retry-After": arg or "60"})
                elif kind in ("301", "302", "303", "307", "308"):
                    self._send(int(kind), b"moved", {"Location": arg or "http://169.254.169.254/latest/meta-data/"})
                else:
                    self._send(int(kind), b"ok" if kind.startswith("2") else f"status {kind}".encode())

        return Handler


def refused_url() -> str:
    """A loopback URL nothing listens on: connecting to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/hook"


# --- the benchmark receiver --------------------------------------------------------------


class FastReceiver:
    """An asyncio HTTP/1.1 server answering 200 to every request; records webhook-id arrival times."""

    def __init__(self) -> None:
        self.receipts: list[tuple[str, float]] = []

    def serve(self, announce) -> None:
        import asyncio

        import httptools

        receipts = self.receipts

        class Protocol(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                self.parser = httptools.HttpRequestParser(self)
                self.hook_id = ""
                self.url = b""

            def data_received(self, data):
                try:
                    self.parser.feed_data(data)
                except httptools.HttpParserError:
                    self.transport.close()

            def on_url(self, url):
                self.url += url

            def on_header(self, name, value):
                if name.lower() == b"webhook-id":
                    self.hook_id = value.decode()

            def on_message_complete(self):
                if self.url == b"/_receipts":
                    body = json.dumps(receipts).encode()
                    receipts.clear()
                else:
                    receipts.append((self.hook_id, time.time()))
                    body = b"ok"
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                self.hook_id, self.url = "", b""

        async def main():
            loop = asyncio.get_running_loop()
            server = await loop.create_server(Protocol, "127.0.0.1", 0, backlog=512)
            announce(server.sockets[0].getsockname()[1])
            await server.serve_forever()

        asyncio.run(main())

    @classmethod
    def spawn(cls) -> tuple[subprocess.Popen, str]:
        """Start one in a child process; returns (process, base URL). Kill the process when done."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.receiver", "--fast"],
            cwd=Path(__file__).resolve().parents[2],
            stdout=subprocess.PIPE,
        )
        line = proc.stdout.readline().decode().strip()
        if not line.isdigit():
            proc.kill()
            raise RuntimeError(f"the benchmark receiver did not start ({line!r})")
        return proc, f"http://127.0.0.1:{line}"


if __name__ == "__main__" and sys.argv[1:] == ["--fast"]:
    FastReceiver().serve(lambda port: print(port, flush=True))
