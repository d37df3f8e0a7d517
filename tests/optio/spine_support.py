"""Helpers for the event-spine tests: WebSocket communicators, a TCP proxy that can take the
broker away, Celery pointed at a given broker, and real server/worker subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from optio.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]


def run(coro):
    """Run an async test scenario to completion (the suite has no asyncio plugin).

    Consumers and `sync_to_async` calls use Django's sync thread; its database connection
    is closed afterwards so the test database can be flushed and dropped."""

    async def scenario():
        try:
            return await coro
        finally:
            await sync_to_async(connections.close_all)()

    return asyncio.run(scenario())


def communicator(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
    from optio.asgi import application

    return WebsocketCommunicator(application, path, headers=headers or [])


class Readiness:
    """Counts consumers whose connect handler (auth, group join, backfill) has finished.

    Consumers accept the handshake before they authenticate and backfill, so a test that
    changes something right after `connect()` would race the backfill's snapshot."""

    def __init__(self) -> None:
        self.count = 0

    def install(self, monkeypatch) -> Readiness:
        from optio import consumers

        original = consumers._StreamConsumer.websocket_connect

        async def websocket_connect(consumer, message):
            try:
                await original(consumer, message)
            finally:
                self.count += 1

        monkeypatch.setattr(consumers._StreamConsumer, "websocket_connect", websocket_connect)
        return self


readiness: Readiness | None = None


async def connect(path: str, headers=None) -> WebsocketCommunicator:
    """Open a WebSocket and, when a Readiness is installed, wait until its set-up is done."""
    before = readiness.count if readiness is not None else 0
    comm = communicator(path, headers)
    connected, _ = await comm.connect(timeout=5)
    assert connected, f"handshake refused for {path}"
    if readiness is not None:
        for _ in range(500):
            if readiness.count > before:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError(f"consumer for {path} did not finish connecting")
    return comm


async def close_code(comm: WebsocketCommunicator, timeout: float = 5) -> int | None:
    """The code of the close the server sends next, skipping any frames before it."""
    while True:
        out = await comm.receive_output(timeout)
        if out["type"] == "websocket.close":
            return out.get("code")


async def frames(comm: WebsocketCommunicator, count: int, timeout: float = 5) -> list[dict]:
    got = []
    for _ in range(count):
        out = await comm.receive_output(timeout)
        assert out["type"] == "websocket.send", out
        got.append(json.loads(out["text"]))
    return got


async def drain(comm: WebsocketCommunicator, quiet: float = 0.3) -> list[dict]:
    """Every frame until the socket has been quiet for `quiet` seconds."""
    got = []
    # receive_output() cancels the application when it times out; receive_nothing() does not.
    while not await comm.receive_nothing(quiet):
        out = await comm.receive_output(5)
        assert out["type"] == "websocket.send", out
        got.append(json.loads(out["text"]))
    return got


async def disconnect(comm: WebsocketCommunicator) -> None:
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await comm.disconnect()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `stop()` refuses new connections and cuts
    live ones, like a broker going away; `start()` brings it back on the same port."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ)
        peers: dict[socket.socket, socket.socket] = {}
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(0.05):
                    sock = key.fileobj
                    if sock is self._listener:
                        client, _ = sock.accept()
                        try:
                            upstream = socket.create_connection(self.target, timeout=2)
                        except OSError:
                            client.close()
                            continue
                        peers[client], peers[upstream] = upstream, client
                        sel.register(client, selectors.EVENT_READ)
                        sel.register(upstream, selectors.EVENT_READ)
                        continue
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    other = peers.get(sock)
                    if not data or other is None:
                        for s in (sock, other):
                            if s is not None and s in peers:
                                sel.unregister(s)
                                peers.pop(s, None)
                                s.close()
                        continue
                    try:
                        other.sendall(data)
                    except OSError:
                        pass
        finally:
            for s in list(peers):
                s.close()
            sel.close()
            self._listener.close()


def _reset_broker_pools() -> None:
    celery_app._pool = None
    with contextlib.suppress(AttributeError, KeyError):
        celery_app.__dict__["amqp"]._producer_pool = None


@contextlib.contextmanager
def celery_broker(url: str):
    """Celery in this process publishes to `url` and really enqueues (not eager)."""
    saved = celery_app.conf.broker_url, celery_app.conf.task_always_eager
    celery_app.conf.broker_url = url
    celery_app.conf.task_always_eager = False
    _reset_broker_pools()
    try:
        yield celery_app
    finally:
        celery_app.conf.broker_url, celery_app.conf.task_always_eager = saved
        _reset_broker_pools()


def wait_for(predicate, timeout: float = 20, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# Real processes (end-to-end test and benchmark).


def service_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_SETTINGS"))}
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, PYTHONUNBUFFERED="1", **extra)
    return env


def start_uvicorn(env: dict[str, str], log_path: Path, workers: int = 1) -> tuple[subprocess.Popen, int]:
    """uvicorn serving optio.asgi on a socket this process bound to an ephemeral port."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "uvicorn", "optio.asgi:application", "--fd", str(sock.fileno()),
           "--log-level", "warning", "--lifespan", "off"]  # fmt: skip
    if workers > 1:
        cmd += ["--workers", str(workers)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, pass_fds=[sock.fileno()])
    sock.close()
    return proc, port


def start_worker(env: dict[str, str], log_path: Path, concurrency: int = 2, pool: str = "threads") -> subprocess.Popen:
    cmd = [sys.executable, "-m", "celery", "-A", "optio", "worker", "-P", pool, "-c", str(concurrency),
           "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "warning", "-n", f"spine-{os.getpid()}@%h"]  # fmt: skip
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_http(url: str, timeout: float = 30, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def stop(*procs: subprocess.Popen | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.terminate()
    for proc in procs:
        if proc is None:
            continue
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
