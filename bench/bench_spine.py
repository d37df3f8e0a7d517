"""The event spine under load: uvicorn + channels-redis + a real Celery worker + PostgreSQL.

1. Events: 500 /ws/events clients, 200 task transitions made through the REST API;
   latency from the event's commit (its envelope timestamp, written just before COMMIT) to
   each client receiving the frame. Run paced (20 transitions/s) and as a burst.
   Baseline: a raw Redis PUBLISH -> SUBSCRIBE round trip at the same pace.
2. Logs: 20,000 lines POSTed in batches of 500 to one task while 10 clients follow
   /ws/logs/<id>; lines/s ingested and delivered to each follower.
   Baseline: a bare `websockets` server pushing the same 20,000 frames to 10 clients.

Creates and drops its own database (optio_bench_spine). Environment: BENCH_POSTGRES_URL
(an admin connection, default postgres://postgres@127.0.0.1:5432/postgres), BENCH_REDIS_URL
(default redis://127.0.0.1:6379/1), BENCH_WORKER_POOL / BENCH_WORKER_CONCURRENCY.
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
CLIENTS_PER_USER = 25
TASKS = 50
TRANSITIONS = ("running", "needs_attention", "running", "completed")  # 50 x 4 = 200
PACE = 20.0  # transitions per second in the paced run
LOG_LINES = 20_000
LOG_BATCH = 500
FOLLOWERS = 10
RECV_TIMEOUT = 60

SETUP = r"""
import json, django
django.setup()
from celery import current_app
current_app.conf.task_always_eager = True  # dispatch set-up events here, before the worker starts
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

BARE_SERVER = r"""
import asyncio, json, sys
from websockets.asyncio.server import serve
clients, ready = set(), asyncio.Event()
async def handler(ws):
    clients.add(ws)
    if len(clients) == {followers}:
        ready.set()
    await ws.wait_closed()
async def main():
    async with serve(handler, "127.0.0.1", 0) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await ready.wait()
        for start in range(0, {lines}, {batch}):
            frames = [json.dumps({{"seq": s + 1, "taskId": "t", "timestamp": "2025-01-01T00:00:00Z", "stream": "stdout",
                                   "type": "text", "content": f"line {{s}} " + "x" * 60, "metadata": {{}}}})
                      for s in range(start, start + {batch})]
            for ws in list(clients):
                for f in frames:
                    await ws.send(f)
        await asyncio.sleep(30)
asyncio.run(main())
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
    parts = urlsplit(admin)
    return admin, urlunsplit(parts._replace(path=f"/{DB_NAME}"))


def _start_uvicorn(env, log) -> tuple[subprocess.Popen, int]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "uvicorn", "optio.asgi:application", "--fd", str(sock.fileno()),
           "--log-level", "warning", "--lifespan", "off"]  # fmt: skip
    cmd += os.environ.get("BENCH_UVICORN_ARGS", "").split()
    if os.environ.get("BENCH_PROFILE"):  # a cProfile of the server, written when it stops
        cmd[1:1] = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, pass_fds=[sock.fileno()])
    sock.close()
    return proc, port


def _start_worker(env, log) -> subprocess.Popen:
    pool = os.environ.get("BENCH_WORKER_POOL", "threads")
    concurrency = os.environ.get("BENCH_WORKER_CONCURRENCY", "4")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "optio", "worker", "-P", pool, "-c", concurrency,
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
    """CPU seconds (user + system) a process has used so far: load-independent cost."""
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


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


async def _events_phase(port: int, setup: dict, burst: bool) -> tuple[list[float], float, int]:
    from websockets.asyncio.client import connect

    base = f"http://127.0.0.1:{port}"
    tokens = setup["tokens"]

    async def open_client(i: int) -> EventClient:
        url = f"ws://127.0.0.1:{port}/ws/events?token={tokens[i // CLIENTS_PER_USER]}"
        return EventClient(await connect(url, max_queue=None, ping_interval=None, open_timeout=60))

    clients = []
    for start in range(0, CLIENTS, 50):  # 50 handshakes at a time
        clients += await asyncio.gather(*[open_client(i) for i in range(start, min(start + 50, CLIENTS))])
    runners = [asyncio.ensure_future(c.run()) for c in clients]
    await asyncio.sleep(2)  # the backfill (last 20 events) drains
    for c in clients:
        c.frames.clear()

    sem = asyncio.Semaphore(8)
    previous: dict[str, asyncio.Future] = {}

    async def transition(task_id: str, state: str, after: asyncio.Future | None, at: float):
        if after is not None:
            await after  # one task's transitions happen in order
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        async with sem:
            body = json.dumps({"state": state}).encode()
            await asyncio.to_thread(_post, f"{base}/api/tasks/{task_id}/transition", tokens[0], body)

    started = time.monotonic()
    jobs = []
    for round_, state in enumerate(TRANSITIONS):
        for i, task_id in enumerate(setup["tasks"]):
            at = started if burst else started + (round_ * len(setup["tasks"]) + i) / PACE
            job = asyncio.ensure_future(transition(task_id, state, previous.get(task_id), at))
            previous[task_id] = job
            jobs.append(job)
    await asyncio.gather(*jobs)
    total = len(jobs)
    deadline = time.monotonic() + RECV_TIMEOUT
    while time.monotonic() < deadline and min(len(c.frames) for c in clients) < total:
        await asyncio.sleep(0.05)
    elapsed = max((c.frames[-1][0] for c in clients if c.frames), default=time.time()) - (
        time.time() - (time.monotonic() - started)
    )
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


# 2. Logs


async def _follow(url: str, count: int, done: list) -> None:
    from websockets.asyncio.client import connect

    async def follow():
        async with connect(url, max_queue=None, ping_interval=None, open_timeout=60) as ws:
            got = 0
            async for raw in ws:
                if raw.startswith('{"seq"'):  # a log frame; envelopes start with "id"
                    got += 1
                    if got == count:
                        done.append(time.monotonic())
                        return

    await asyncio.wait_for(follow(), RECV_TIMEOUT * 3)


async def _logs_phase(port: int, setup: dict) -> tuple[float, list[float]]:
    task_id, token = setup["logTask"], setup["tokens"][-1]
    done: list[float] = []
    url = f"ws://127.0.0.1:{port}/ws/logs/{task_id}?token={token}&after=0"
    followers = [asyncio.ensure_future(_follow(url, LOG_LINES, done)) for _ in range(FOLLOWERS)]
    await asyncio.sleep(2)
    line = {"type": "assistant", "content": "x" * 60, "metadata": {"turn": 1}}
    started = time.monotonic()
    for start in range(0, LOG_LINES, LOG_BATCH):
        body = "\n".join(
            json.dumps(dict(line, content=f"line {start + i} " + line["content"])) for i in range(LOG_BATCH)
        )
        await asyncio.to_thread(_post, f"http://127.0.0.1:{port}/api/tasks/{task_id}/logs", token, body.encode(),
                                "application/x-ndjson")  # fmt: skip
    ingested = time.monotonic() - started
    await asyncio.wait_for(asyncio.gather(*followers), RECV_TIMEOUT * 2)
    return LOG_LINES / ingested, [LOG_LINES / (t - started) for t in done]


async def _bare_baseline() -> list[float]:
    code = BARE_SERVER.format(followers=FOLLOWERS, lines=LOG_LINES, batch=LOG_BATCH)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        done: list[float] = []
        started = time.monotonic()
        await asyncio.gather(*[_follow(f"ws://127.0.0.1:{port}/", LOG_LINES, done) for _ in range(FOLLOWERS)])
        return [LOG_LINES / (t - started) for t in done]
    finally:
        _stop(proc)


# The run


def main() -> None:
    phases = set(os.environ.get("BENCH_PHASES", "events,logs").split(","))
    admin_url, database_url = _database_urls()
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1")
    env = _env(database_url, redis_url)
    logdir = Path(tempfile.mkdtemp(prefix="bench-spine-"))
    _admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)', admin_url)
    _admin(f'CREATE DATABASE "{DB_NAME}"', admin_url)
    web = worker = None
    results: dict = {}
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        users = CLIENTS // CLIENTS_PER_USER
        out = subprocess.run([sys.executable, "-c", SETUP.format(users=users, tasks=TASKS)],
                             cwd=ROOT, env=env, check=True, capture_output=True, text=True)  # fmt: skip
        setup = json.loads(out.stdout.strip().splitlines()[-1])
        with open(logdir / "uvicorn.log", "wb") as web_log, open(logdir / "worker.log", "wb") as worker_log:
            web, port = _start_uvicorn(env, web_log)
            worker = _start_worker(env, worker_log)
            _wait_http(f"http://127.0.0.1:{port}/api/health", web)
            time.sleep(3)  # let the worker connect before the clock starts
            if "events" in phases:
                results["baseline"] = asyncio.run(_redis_baseline(redis_url, len(TRANSITIONS) * TASKS, PACE))
                before = _cpu(web), _cpu(worker)
                results["paced"] = asyncio.run(_events_phase(port, setup, burst=False))
                results["paced_cpu"] = _cpu(web) - before[0], _cpu(worker) - before[1]
                _recycle(setup, env)  # completed is final: the burst needs fresh tasks
                before = _cpu(web), _cpu(worker)
                results["burst"] = asyncio.run(_events_phase(port, setup, burst=True))
                results["burst_cpu"] = _cpu(web) - before[0], _cpu(worker) - before[1]
            if "logs" in phases:
                before = _cpu(web)
                results["logs"] = asyncio.run(_logs_phase(port, setup))
                results["logs_cpu"] = _cpu(web) - before
                results["bare"] = asyncio.run(_bare_baseline())
    finally:
        # SIGINT for uvicorn: it re-raises the signal it stopped for, and only SIGINT lets a
        # cProfile wrapper (BENCH_PROFILE) write its file on the way out.
        _stop(web, sig=signal.SIGINT)
        _stop(worker)
        try:
            _admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)', admin_url)
        except Exception as exc:
            print(f"could not drop {DB_NAME}: {exc}")

    if "baseline" in results:
        base = summary(results["baseline"])
        rows = [
            [
                "raw Redis PUBLISH->SUBSCRIBE (baseline)",
                base["n"],
                base["p50"],
                base["p99"],
                base["max"],
                1.0,
                1.0,
                0,
                "",
            ]
        ]
        cpu_rows = []
        for name, key in (
            (f"/ws/events x{CLIENTS}, {PACE:.0f} transitions/s", "paced"),
            (f"/ws/events x{CLIENTS}, burst of {len(TRANSITIONS) * TASKS}", "burst"),
        ):
            lat, secs, missing = results[key]
            s = summary(lat)
            rows.append([name, s["n"], s["p50"], s["p99"], s["max"], s["p50"] / base["p50"], s["p99"] / base["p99"],
                         missing, f"{secs:.1f}"])  # fmt: skip
            web_cpu, worker_cpu = results[f"{key}_cpu"]
            cpu_rows.append(
                [name, web_cpu, web_cpu / max(s["n"], 1) * 1e6, worker_cpu, worker_cpu / len(TRANSITIONS) / TASKS * 1e3]
            )
        print(table("Commit -> frame latency, ms (target: p99 < 300 ms at 500 clients)",
                    ["run", "frames", "p50", "p99", "max", "p50 ratio", "p99 ratio", "missing", "seconds"], rows))  # fmt: skip
        print(table("CPU used (independent of machine load)",
                    ["run", "uvicorn s", "uvicorn us/frame", "worker s", "worker ms/event"], cpu_rows))  # fmt: skip
    if "logs" in results:
        ingest_rate, delivered = results["logs"]
        bare_min = min(results["bare"])
        print(table(
            f"Log throughput: {LOG_LINES:,} lines in batches of {LOG_BATCH}, {FOLLOWERS} followers (target: >= 5,000 lines/s each)",
            ["measure", "lines/s", "ratio to bare websockets"],
            [
                ["ingested (POST /api/tasks/<id>/logs)", ingest_rate, ""],
                ["uvicorn CPU us per line delivered", results["logs_cpu"] / (LOG_LINES * FOLLOWERS) * 1e6, ""],
                ["delivered, slowest follower", min(delivered), min(delivered) / bare_min],
                ["delivered, median follower", sorted(delivered)[len(delivered) // 2], ""],
                ["bare websockets server, slowest client (baseline)", bare_min, 1.0],
            ],
        ))  # fmt: skip
    print(f"(server and worker logs: {logdir}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


def _recycle(setup: dict, env: dict) -> None:
    """Completed is final, so the burst uses fresh tasks created the same way."""
    code = SETUP.format(users=0, tasks=TASKS)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    setup["tasks"] = json.loads(out.stdout.strip().splitlines()[-1])["tasks"]


if __name__ == "__main__":
    main()
