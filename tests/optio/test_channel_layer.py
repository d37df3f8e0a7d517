"""The embedded channel layer: frames from the Celery worker thread reach WebSocket consumers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from optio import events, lifecycle
from optio.channel_layer import ThreadSafeInMemoryChannelLayer
from optio.embedded import EmbeddedCelery
from optio.models import ApiToken, Event, Repo
from tests.optio.spine_support import ROOT, celery_broker, connect, disconnect, frames, run

EMBEDDED_LAYER = "optio.channel_layer.ThreadSafeInMemoryChannelLayer"


def test_embedded_settings_use_the_thread_safe_layer_not_the_stock_one():
    # Load settings as `make run` does (no REDIS_URL, no DATABASE_URL), whatever this run uses.
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["DJANGO_SETTINGS_MODULE"] = "optio.settings"
    code = (
        "import django, json; django.setup(); from django.conf import settings; "
        "from channels.layers import get_channel_layer; "
        "print(json.dumps([settings.CHANNEL_LAYERS['default']['BACKEND'], settings.CELERY_BROKER_URL, "
        "type(get_channel_layer()).__module__ + '.' + type(get_channel_layer()).__name__]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    backend, broker, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert backend == loaded == EMBEDDED_LAYER
    assert backend != "channels.layers.InMemoryChannelLayer"
    assert broker.startswith("memory://")


def test_group_send_from_another_threads_loop_wakes_a_waiting_receiver():
    layer = ThreadSafeInMemoryChannelLayer()

    async def scenario():
        channel = await layer.new_channel()
        await layer.group_add("events", channel)
        waiting = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0.05)  # the receiver is parked on this loop, which is otherwise idle
        sender = threading.Thread(target=lambda: asyncio.run(layer.group_send("events", {"type": "x", "n": 1})))
        sender.start()
        sender.join(5)
        return await asyncio.wait_for(waiting, 2)

    assert asyncio.run(scenario()) == {"type": "x", "n": 1}


def test_group_send_beyond_capacity_drops_like_channels_redis():
    layer = ThreadSafeInMemoryChannelLayer(capacity=2)

    async def scenario():
        channel = await layer.new_channel()
        await layer.group_add("g", channel)
        for n in range(3):
            await layer.group_send("g", {"type": "x", "n": n})
        got = [(await layer.receive(channel))["n"], (await layer.receive(channel))["n"]]
        try:
            await asyncio.wait_for(layer.receive(channel), 0.2)
        except TimeoutError:
            return got
        raise AssertionError("a third message was delivered")

    assert asyncio.run(scenario()) == [0, 1]


@pytest.mark.django_db(transaction=True)
def test_celery_task_in_embedded_worker_thread_reaches_a_websocket_consumer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": EMBEDDED_LAYER}}  # what embedded mode uses
    user = get_user_model().objects.create_user("ada")
    token = ApiToken.objects.issue(user)[1]
    repo = Repo.objects.create(url="https://github.com/acme/webapp")
    dispatched_in = []

    def where(event):
        from celery import current_task

        dispatched_in.append((threading.current_thread().name, current_task.name, current_task.request.is_eager))

    events.subscribe("test.thread", where)

    created_in = []

    def create():
        created_in.append(threading.current_thread().name)
        return lifecycle.create_task(repo, "Add email validation", "Do it")

    async def scenario():
        comm = await connect(f"/ws/events?token={token}")
        assert await comm.receive_nothing(0.2)
        task = await sync_to_async(create)()
        got = await frames(comm, 2, timeout=15)
        await disconnect(comm)
        return task, got

    with celery_broker("memory://localhost/"):
        worker = EmbeddedCelery(concurrency=2, beat=False).start()
        try:
            task, got = run(scenario())
        finally:
            worker.stop()
            events.unsubscribe("test.thread")

    assert [f["event"] for f in got] == ["task.created", "task.queued"]
    assert {f["data"]["taskId"] for f in got} == {str(task.pk)}
    assert Event.objects.filter(task=task, dispatched_at__isnull=False).count() == 2
    # Dispatched through the broker by the embedded worker's pool threads, not inline.
    assert len(dispatched_in) == 2
    for thread_name, task_name, eager in dispatched_in:
        assert thread_name not in (created_in[0], threading.main_thread().name)
        assert (task_name, eager) == ("optio.dispatch_event", False)
