"""The event spine under load: uvicorn + channels-redis + a real Celery worker + PostgreSQL.

1. Events: 500 /ws/events clients; 200 task transitions made through the REST API, paced
   at 20/s and then as a burst; latency from the event's commit (its envelope timestamp,
   taken inside the transaction just before COMMIT) to each client receiving the frame.
2. Logs: 20,000 lines POSTed in batches of 500 to one task while 10 clients follow
   /ws/logs/<id>; lines/s ingested, and delivered to each follower.

Baselines measured in the same run: a raw Redis PUBLISH -> SUBSCRIBE round trip, and the
same fan-outs from a trivial ASGI app under the same uvicorn (no Django, Channels, Redis or
Celery): the floor this machine sets. CPU seconds used by each server process are read
from /proc, which stays meaningful when the machine is busy with other work.

Creates and drops its own database (optio_bench_spine). Environment: BENCH_POSTGRES_URL
(an admin connection; default postgres://postgres@127.0.0.1:5432/postgres), BENCH_REDIS_URL
(default redis://127.0.0.1:6379/1), BENCH_WS_DEFLATE=1|0 (measure only uvicorn's default
permessage-deflate, or only --ws-per-message-deflate false; default: both),
BENCH_PHASES=events,logs, BENCH_PROFILE=<file> (cProfile the Optio server).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from common import summary, table

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "optio_bench_spine"
CLIENTS = 500
CLIENTS_PER_USER = 25  # under the per-user connection cap
TASKS = 50
TRANSITIONS = ("running", "needs_attention", "running", "completed")  # 50 tasks x 4 = 200
PACE = 20.0  # transitions per second in the paced run
LOG_LINES = 20_000
LOG_BATCH = 500
FOLLOWERS = 10
RECV_TIMEOUT = 60
# Both uvicorn settings are measured unless BENCH_WS_DEFLATE=1 or 0 picks one.
DEFLATE = os.environ.get("BENCH_WS_DEFLATE", "1") != "0"

SETUP = r"""
import json, django
django.setup()
from celery import current_app
current_app.conf.task_always_eager = True  # set-up events are dispatched here, not timed
from django.contrib.auth import get_user_model
from optio import lifecycle
from optio.models import ApiToken, Repo
users = [get_user_model().objects.create_user(f"bench{{i}}") for i in range({users})]
tokens = [ApiToken.objects.issue(u, name="bench")[1] for u in users]
repo, _ = Repo.objects.get_or_create(url="https://github.com/acme/bench")
tasks = [str(lifecycle.create_task(repo, f"bench task {{i}}", "p").pk) for i in range({tasks})]
log_task = str(lifecycle.create_task(repo, "log task", "p").pk)
print(json.dumps({{"tokens": tokens, "tasks": tasks, "logTask": log_task}}))
"""

# argv: mode clients count pace batch fd deflate(0/1)
BARE_APP = r"""
import asyncio, json, sys, time
from datetime import datetime, timezone
import uvicorn

mode, _clients, count, pace, batch, fd, deflate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7] == "1"
senders, state = [], {}

def stamp():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")

async def drive():
    await state["go"].wait()
    started = time.monotonic()
    if mode == "events":
        for n in range(count):
            frame = json.dumps({"id": f"evt_{n}", "event": "task.running", "timestamp": stamp(),
                                "data": {"taskId": "0" * 36, "title": "bench task", "repoUrl": "https://github.com/acme/bench",
                                         "state": "running", "fromState": "queued", "prUrl": None, "costUsd": None,
                                         "ticketSource": None, "ticketExternalId": None}, "seq": n + 1})
            for send in list(senders):
                await send({"type": "websocket.send", "text": frame})
            if pace:
                await asyncio.sleep(max(0, started + (n + 1) / pace - time.monotonic()))
    else:
        for first in range(0, count, batch):
            frames = [json.dumps({"seq": s + 1, "taskId": "0" * 36, "timestamp": stamp(), "stream": "stdout",
                                  "type": "assistant", "content": f"line {s} " + "x" * 60, "metadata": {"turn": 1}})
                      for s in range(first, first + batch)]
            for send in list(senders):
                for f in frames:
                    await send({"type": "websocket.send", "text": f})

async def app(scope, receive, send):
    if scope["type"] != "websocket":
        return
    if "go" not in state:
        state["go"] = asyncio.Event()
        state["driver"] = asyncio.ensure_future(drive())
    await receive()
    await send({"type": "websocket.accept"})
    senders.append(send)
    while (await receive())["type"] != "websocket.disconnect":
        # The bench's starter connection says "go" once every client is connected; it is
        # not one of the measured clients.
        if send in senders:
            senders.remove(send)
        state["go"].set()
    if send in senders:
        senders.remove(send)

uvicorn.run(app, fd=fd, log_level="warning", lifespan="off", ws_per_message_deflate=deflate)
"""


# Processes and services


def _env(database_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_SETTINGS"))}
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, PYTHONUNBUFFERED="1",
               DJANGO_SETTINGS_MODULE="optio.settings", OPTIO_ALLOW_PRIVATE_URLS="1")  # fmt: skip
    return env


def _admin(sql: str, admin_url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql)


def _database_urls() -> tuple[str, str]:
    admin = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    return admin, urlunsplit(urlsplit(admin)._replace(path=f"/{DB_NAME}"))


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    return sock


def _start_uvicorn(env, log, deflate: bool) -> tuple[subprocess.Popen, int]:
    sock = _listener()
    cmd = [sys.executable, "-m", "uvicorn", "optio.asgi:application", "--fd", str(sock.fileno()),
           "--log-level", "warning", "--lifespan", "off"]  # fmt: skip
    if not deflate:
        cmd += ["--ws-per-message-deflate", "false"]
    if os.environ.get("BENCH_PROFILE"):  # a cProfile of the server, written when it stops
        cmd[1:1] = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, pass_fds=[sock.fileno()])
    port = sock.getsockname()[1]
    sock.close()
    return proc, port


def _start_bare(mode: str, clients: int, count: int, pace: float, batch: int, deflate: bool):
    sock = _listener()
    args = [mode, clients, count, pace, batch, sock.fileno(), int(deflate)]
    proc = subprocess.Popen([sys.executable, "-c", BARE_APP, *map(str, args)], cwd=ROOT, pass_fds=[sock.fileno()])
    port = sock.getsockname()[1]
    sock.close()
    return proc, port


def _start_worker(env, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "optio", "worker", "-P", "threads", "-c", "4",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "warning", "-n", "bench-spine@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _stop(*procs, sig: int = signal.SIGTERM) -> None:
    for p in procs:
        if p is not None and p.poll() is None:
            p.send_signal(sig)
    for p in procs:
        if p is None:
            continue
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _wait_http(url: str, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def _post(url: str, token: str, body: bytes, content_type: str = "application/json") -> dict:
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _cpu(proc) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# Clients


class EventClient:
    """Keeps (arrival time, raw text); parsing waits until the run is over."""

    def __init__(self, ws):
        self.ws = ws
        self.frames: list[tuple[float, str]] = []

    async def run(self):
        try:
            async for raw in self.ws:
                self.frames.append((time.time(), raw))
        except Exception:  # the socket closes at the end of the run
            pass


async def _open_clients(urls: list[str]) -> list[EventClient]:
    from websockets.asyncio.client import connect

    clients: list[EventClient] = []
    for start in range(0, len(urls), 50):  # 50 handshakes at a time
        batch = urls[start : start + 50]
        sockets = await asyncio.gather(
            *[connect(u, max_queue=None, ping_interval=None, open_timeout=60) for u in batch]
        )
        clients += [EventClient(ws) for ws in sockets]
    return clients


async def _collect(clients: list[EventClient], total: int, trigger) -> tuple[list[float], float, int]:
    """Run `trigger()`, wait for `total` frames at every client; latencies (ms), seconds, missing."""
    runners = [asyncio.ensure_future(c.run()) for c in clients]
    await asyncio.sleep(2)  # backfill frames drain
    for c in clients:
        c.frames.clear()
    started = time.time()
    await trigger()
    deadline = time.monotonic() + RECV_TIMEOUT
    while time.monotonic() < deadline and min(len(c.frames) for c in clients) < total:
        await asyncio.sleep(0.05)
    elapsed = max((c.frames[-1][0] for c in clients if c.frames), default=started) - started
    latencies, missing = [], 0
    for c in clients:
        missing += max(0, total - len(c.frames))
        parsed = [(t, json.loads(raw)) for t, raw in c.frames]
        seqs = [f["seq"] for _, f in parsed]
        if seqs != sorted(set(seqs)):
            raise RuntimeError("a client saw frames out of order or twice")
        latencies += [(t - _ts(f["timestamp"])) * 1000 for t, f in parsed]
    for c in clients:
        await c.ws.close()
    await asyncio.gather(*runners, return_exceptions=True)
    return latencies, elapsed, missing


async def _follow(url: str, count: int, done: list) -> None:
    from websockets.asyncio.client import connect

    async def follow():
        async with connect(url, max_queue=None, ping_interval=None, open_timeout=60) as ws:
            got, first = 0, None
            async for raw in ws:
                if raw.startswith('{"seq"'):  # a log line; event envelopes start with "id"
                    got += 1
                    first = first or time.monotonic()
                    if got == count:
                        done.append((first, time.monotonic()))
                        return

    await asyncio.wait_for(follow(), RECV_TIMEOUT * 3)


# 1. Events


async def _redis_baseline(redis_url: str, count: int, pace: float) -> list[float]:
    import redis.asyncio as aioredis

    sub_client, pub_client = aioredis.from_url(redis_url), aioredis.from_url(redis_url)
    pubsub = sub_client.pubsub()
    await pubsub.subscribe("bench-spine-baseline")
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    latencies = []

    async def receive():
        while len(latencies) < count:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            if msg is not None:
                latencies.append((time.time() - float(msg["data"])) * 1000)

    receiver = asyncio.ensure_future(receive())
    for _ in range(count):
        await pub_client.publish("bench-spine-baseline", repr(time.time()))
        await asyncio.sleep(1 / pace)
    await asyncio.wait_for(receiver, 10)
    await pubsub.aclose()
    await sub_client.aclose()
    await pub_client.aclose()
    return latencies


async def _optio_events(port: int, setup: dict, burst: bool):
    tokens = setup["tokens"]
    clients = await _open_clients(
        [f"ws://127.0.0.1:{port}/ws/events?token={tokens[i // CLIENTS_PER_USER]}" for i in range(CLIENTS)]
    )
    sem = asyncio.Semaphore(8)

    async def transition(task_id: str, state: str, after: asyncio.Future | None, at: float):
        if after is not None:
            await after  # one task's transitions happen in order
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        async with sem:
            body = json.dumps({"state": state}).encode()
            await asyncio.to_thread(_post, f"http://127.0.0.1:{port}/api/tasks/{task_id}/transition", tokens[0], body)

    async def trigger():
        started, previous, jobs = time.monotonic(), {}, []
        for round_, state in enumerate(TRANSITIONS):
            for i, task_id in enumerate(setup["tasks"]):
                at = started if burst else started + (round_ * len(setup["tasks"]) + i) / PACE
                previous[task_id] = asyncio.ensure_future(transition(task_id, state, previous.get(task_id), at))
                jobs.append(previous[task_id])
        await asyncio.gather(*jobs)

    return await _collect(clients, len(TRANSITIONS) * TASKS, trigger)


async def _bare_events(burst: bool, deflate: bool):
    count = len(TRANSITIONS) * TASKS
    proc, port = _start_bare("events", CLIENTS, count, 0 if burst else PACE, 0, deflate)
    try:
        clients = await _open_clients([f"ws://127.0.0.1:{port}/"] * CLIENTS)
        before = _cpu(proc)

        from websockets.asyncio.client import connect

        async with connect(f"ws://127.0.0.1:{port}/", open_timeout=60) as starter:

            async def trigger():
                await starter.send("go")

            result = await _collect(clients, count, trigger)
        return result, _cpu(proc) - before
    finally:
        _stop(proc)


# 2. Logs


async def _optio_logs(port: int, setup: dict) -> tuple[float, list[float]]:
    task_id, token = setup["logTask"], setup["tokens"][-1]
    done: list[float] = []
    url = f"ws://127.0.0.1:{port}/ws/logs/{task_id}?token={token}&after=0"
    followers = [asyncio.ensure_future(_follow(url, LOG_LINES, done)) for _ in range(FOLLOWERS)]
    await asyncio.sleep(2)
    line = {"type": "assistant", "content": "x" * 60, "metadata": {"turn": 1}}
    started = time.monotonic()
    for first in range(0, LOG_LINES, LOG_BATCH):
        body = "\n".join(json.dumps(dict(line, content=f"line {first + i} " + "x" * 60)) for i in range(LOG_BATCH))
        await asyncio.to_thread(_post, f"http://127.0.0.1:{port}/api/tasks/{task_id}/logs", token, body.encode(),
                                "application/x-ndjson")  # fmt: skip
    ingested = time.monotonic() - started
    await asyncio.wait_for(asyncio.gather(*followers), RECV_TIMEOUT * 3)
    return LOG_LINES / ingested, [LOG_LINES / (t - started) for _, t in done]  # from the first POST


async def _bare_logs(deflate: bool) -> tuple[list[float], float]:
    from websockets.asyncio.client import connect

    proc, port = _start_bare("logs", FOLLOWERS, LOG_LINES, 0, LOG_BATCH, deflate)
    try:
        done: list[float] = []
        followers = [
            asyncio.ensure_future(_follow(f"ws://127.0.0.1:{port}/", LOG_LINES, done)) for _ in range(FOLLOWERS)
        ]
        await asyncio.sleep(2)  # every follower connected
        before = _cpu(proc)
        async with connect(f"ws://127.0.0.1:{port}/", open_timeout=60) as starter:
            await starter.send("go")
            await asyncio.gather(*followers)
        return [LOG_LINES / (t - first) for first, t in done], _cpu(proc) - before
    finally:
        _stop(proc)


# The run


def main() -> None:
    phases = set(os.environ.get("BENCH_PHASES", "events,logs").split(","))
    configs = [DEFLATE] if "BENCH_WS_DEFLATE" in os.environ else [True, False]
    admin_url, database_url = _database_urls()
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1")
    env = _env(database_url, redis_url)
    logdir = Path(tempfile.mkdtemp(prefix="bench-spine-"))
    _admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)', admin_url)
    _admin(f'CREATE DATABASE "{DB_NAME}"', admin_url)
    web = worker = None
    results: dict[bool, dict] = {}
    redis = None
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)

        def setup_data(users: int) -> dict:
            code = SETUP.format(users=users, tasks=TASKS)
            out = subprocess.run(
                [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True
            )
            return json.loads(out.stdout.strip().splitlines()[-1])

        setup = setup_data(CLIENTS // CLIENTS_PER_USER)
        with open(logdir / "uvicorn.log", "ab") as web_log, open(logdir / "worker.log", "wb") as worker_log:
            worker = _start_worker(env, worker_log)
            if "events" in phases:
                redis = asyncio.run(_redis_baseline(redis_url, len(TRANSITIONS) * TASKS, PACE))
            for deflate in configs:
                r = results[deflate] = {}
                web, port = _start_uvicorn(env, web_log, deflate)
                _wait_http(f"http://127.0.0.1:{port}/api/health", web)
                time.sleep(2)  # let the worker connect before any clock starts
                if "events" in phases:
                    for mode, burst in (("paced", False), ("burst", True)):
                        setup.update(tasks=setup_data(0)["tasks"], logTask=setup["logTask"])  # fresh tasks
                        before = _cpu(web), _cpu(worker)
                        r[mode] = asyncio.run(_optio_events(port, setup, burst))
                        r[f"{mode}_cpu"] = _cpu(web) - before[0], _cpu(worker) - before[1]
                        r[f"bare_{mode}"] = asyncio.run(_bare_events(burst, deflate))
                if "logs" in phases:
                    setup["logTask"] = setup_data(0)["logTask"]
                    before = _cpu(web)
                    r["logs"] = asyncio.run(_optio_logs(port, setup))
                    r["logs_cpu"] = _cpu(web) - before
                    r["bare_logs"] = asyncio.run(_bare_logs(deflate))
                # SIGINT: uvicorn re-raises the signal it stopped for, and only SIGINT lets a
                # cProfile wrapper (BENCH_PROFILE) write its file on the way out.
                _stop(web, sig=signal.SIGINT)
                web = None
    finally:
        _stop(web, sig=signal.SIGINT)
        _stop(worker)
        try:
            _admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)', admin_url)
        except Exception as exc:
            print(f"could not drop {DB_NAME}: {exc}")
    if redis is not None:
        s = summary(redis)
        print(table("Baseline: raw Redis PUBLISH -> SUBSCRIBE round trip, ms", ["n", "p50", "p99", "max"],
                    [[s["n"], s["p50"], s["p99"], s["max"]]]))  # fmt: skip
    for deflate, r in results.items():
        _report(
            r, f"uvicorn permessage-deflate {'on (its default)' if deflate else 'off (--ws-per-message-deflate false)'}"
        )
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; server logs: {logdir})")


def _report(r: dict, config: str) -> None:
    frames = CLIENTS * len(TRANSITIONS) * TASKS
    if "paced" in r:
        rows = []
        for mode, label in (("paced", f"{PACE:.0f} transitions/s"), ("burst", f"burst of {len(TRANSITIONS) * TASKS}")):
            (bare_lat, bare_s, bare_missing), bare_cpu = r[f"bare_{mode}"]
            lat, secs, missing = r[mode]
            web_cpu, worker_cpu = r[f"{mode}_cpu"]
            b, o = summary(bare_lat), summary(lat)
            rows.append([f"bare uvicorn fan-out, {label}", b["n"], b["p50"], b["p99"], b["max"], "1.00", "1.00",
                         bare_missing, bare_cpu / frames * 1e6, ""])  # fmt: skip
            rows.append([f"Optio /ws/events x{CLIENTS}, {label}", o["n"], o["p50"], o["p99"], o["max"],
                         o["p50"] / b["p50"], o["p99"] / b["p99"], missing, web_cpu / frames * 1e6,
                         worker_cpu / (len(TRANSITIONS) * TASKS) * 1e3])  # fmt: skip
        print(table(f"Commit -> frame latency, ms; {config} (target: p99 < 300 ms at 500 clients)",
                    ["run", "frames", "p50", "p99", "max", "p50 ratio", "p99 ratio", "missing",
                     "server CPU us/frame", "worker CPU ms/event"], rows))  # fmt: skip
    if "logs" in r:
        ingest_rate, delivered = r["logs"]
        bare, bare_cpu = r["bare_logs"]
        lines = LOG_LINES * FOLLOWERS
        print(table(
            f"Log throughput: {LOG_LINES:,} lines in batches of {LOG_BATCH}, {FOLLOWERS} followers; {config} "
            "(target: >= 5,000 lines/s to every follower)",
            ["measure", "lines/s", "ratio to bare", "server CPU us/line delivered"],
            [
                ["Optio ingested (POST /api/tasks/<id>/logs)", ingest_rate, "", ""],
                ["Optio delivered, slowest follower", min(delivered), min(delivered) / min(bare), r["logs_cpu"] / lines * 1e6],
                ["Optio delivered, median follower", sorted(delivered)[len(delivered) // 2], "", ""],
                ["bare uvicorn, slowest follower", min(bare), 1.0, bare_cpu / lines * 1e6],
            ],
        ))  # fmt: skip


if __name__ == "__main__":
    main()
