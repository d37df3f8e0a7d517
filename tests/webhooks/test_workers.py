"""Real Celery worker processes on PostgreSQL and Redis: a worker killed mid-request, and four
workers racing over a thousand deliveries (each queued twice) without a duplicate request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery import Celery
from django.db import connection
from django.utils import timezone

from optio.models import Event
from tests import services
from tests.fakes.receiver import Receiver
from webhooks import delivery, endpoints
from webhooks.models import Attempt, Delivery

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def _database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class Workers:
    """Starts `celery -A optio worker` processes on the test database and a queue of their own."""

    def __init__(self, redis_url: str, tmp: Path):
        self.redis_url, self.tmp = redis_url, tmp
        self.queue = f"webhooks-test-{uuid.uuid4().hex[:8]}"
        self.procs: list[subprocess.Popen] = []
        self.sender = Celery("webhooks-test-sender", broker=redis_url, set_as_current=False)

    def start(self, name: str, *, beat: bool = False) -> subprocess.Popen:
        env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="tests.webhooks.worker_settings",
            DATABASE_URL=_database_url(),
            REDIS_URL=self.redis_url,
            OPTIO_ALLOW_PRIVATE_URLS="1",
            OPTIO_TEST_QUEUE=self.queue,
            PYTHONPATH=str(ROOT),
        )
        cmd = [sys.executable, "-m", "celery", "-A", "optio", "worker", "--pool=solo", "-Q", self.queue]
        cmd += ["-n", f"{name}-{self.queue}@localhost", "--without-heartbeat", "--without-mingle", "--without-gossip"]
        cmd += ["--loglevel=WARNING"]
        if beat:
            cmd += ["-B", "-s", str(self.tmp / f"beat-{name}")]
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        # A session of its own, so stop() can kill the worker with its children (-B forks a beat process).
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def deliver(self, pk: int) -> None:
        self.sender.send_task("webhooks.deliver", args=[pk], queue=self.queue)

    def drain(self) -> None:
        self.sender.send_task("webhooks.drain", queue=self.queue)

    def queue_length(self) -> int:
        with self.sender.connection_for_write() as conn:
            return conn.default_channel.client.llen(self.queue)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log"))

    def stop(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the worker and anything it forked
            except ProcessLookupError:
                pass
        for proc in self.procs:
            proc.wait(timeout=10)
        with self.sender.connection_for_write() as conn:
            client = conn.default_channel.client
            client.delete(self.queue)
            # A killed worker leaves its message in kombu's unacked hash; drop ours, keep others'.
            for tag, raw in client.hgetall("unacked").items():
                try:
                    routing_key = json.loads(raw)[0]["properties"]["delivery_info"]["routing_key"]
                except (ValueError, KeyError, IndexError, TypeError):
                    continue
                if routing_key == self.queue:
                    client.hdel("unacked", tag)
                    client.zrem("unacked_index", tag)


@pytest.fixture
def workers(transactional_db, tmp_path):
    services.require_postgres()
    pool = Workers(services.redis_url(), tmp_path)
    try:
        yield pool
    finally:
        pool.stop()


def _deliveries(webhook, count: int) -> list[int]:
    now = timezone.now()
    events = Event.objects.bulk_create(
        [Event(name="task.completed", data={"taskId": f"t{i}", "title": f"Task {i}"}) for i in range(count)]
    )
    rows = [
        Delivery(webhook=webhook, event=e, event_name=e.name, body=delivery.serialize(e), next_attempt_at=now)
        for e in events
    ]
    return [d.pk for d in Delivery.objects.bulk_create(rows)]


def _wait(predicate, timeout: float, what: str, workers: Workers) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{workers.logs()}")
        time.sleep(0.2)


@pytest.mark.parametrize("message", ["deliver", "drain"])
def test_a_worker_killed_mid_request_leaves_a_delivery_that_completes_after_restart(workers, message):
    with Receiver() as rx:
        rx.plan("hang")  # the first request never gets an answer: the worker is stuck in it
        hook = endpoints.create(url=rx.url, events=["*"], secret="whsec_c2VjcmV0LWJ5dGVz")
        (pk,) = _deliveries(hook, 1)
        first = workers.start("first")
        if message == "deliver":
            workers.deliver(pk)
        else:
            workers.drain()
        rx.wait_for(1, timeout=60)
        assert Delivery.objects.get(pk=pk).status == "sending"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

        workers.start("second", beat=True)  # its sweeper finds the expired lease
        _wait(lambda: Delivery.objects.get(pk=pk).status == "success", 60, "the rescued delivery", workers)

        d = Delivery.objects.get(pk=pk)
        assert d.attempt_count == 2
        lost, sent = rx.requests
        assert lost.body == sent.body == d.body_bytes
        assert lost.headers["webhook-id"] == sent.headers["webhook-id"] == d.public_id
        assert list(Attempt.objects.filter(delivery=d).values_list("number", "error_class", "success")) == [
            (1, "worker_lost", False),
            (2, "", True),
        ]


def test_four_workers_and_a_thousand_deliveries_make_exactly_a_thousand_requests(workers):
    with Receiver() as rx:
        hook = endpoints.create(url=rx.url, events=["*"], secret="whsec_c2VjcmV0LWJ5dGVz")
        ids = _deliveries(hook, 1000)
        for i in range(4):
            workers.start(f"w{i}")
        for pk in ids + ids:  # every delivery queued twice: the claim must make the second a no-op
            workers.deliver(pk)
        done = Delivery.objects.filter(webhook=hook, status="success")
        _wait(lambda: done.count() == 1000, 120, "1,000 successful deliveries", workers)
        _wait(lambda: workers.queue_length() == 0, 60, "the queue to drain", workers)
        time.sleep(1)  # let the last duplicates finish their (no-op) claims

        assert len(rx.requests) == 1000
        assert len({r.headers["webhook-id"] for r in rx.requests}) == 1000
        assert Attempt.objects.filter(delivery__webhook=hook).count() == 1000
        assert set(Delivery.objects.filter(webhook=hook).values_list("attempt_count", flat=True)) == {1}


def test_four_workers_draining_a_thousand_deliveries_make_exactly_a_thousand_requests(workers):
    with Receiver() as rx:
        hook = endpoints.create(url=rx.url, events=["*"], secret="whsec_c2VjcmV0LWJ5dGVz")
        _deliveries(hook, 1000)
        for i in range(4):
            workers.start(f"w{i}")
        for _ in range(2 * (1000 // 32 + 1)):  # twice the drains needed: the extra ones find nothing
            workers.drain()
        done = Delivery.objects.filter(webhook=hook, status="success")
        _wait(lambda: done.count() == 1000, 120, "1,000 successful deliveries", workers)
        _wait(lambda: workers.queue_length() == 0, 60, "the queue to drain", workers)
        time.sleep(1)  # let the last drains finish their (empty) claims

        assert len(rx.requests) == 1000
        assert len({r.headers["webhook-id"] for r in rx.requests}) == 1000
        assert Attempt.objects.filter(delivery__webhook=hook).count() == 1000
        assert set(Delivery.objects.filter(webhook=hook).values_list("attempt_count", flat=True)) == {1}
