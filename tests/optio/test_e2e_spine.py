"""End to end with real processes: uvicorn + `celery -A optio worker` + Redis + PostgreSQL,
and a real WebSocket client receiving the events an API call caused."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from optio import lifecycle
from optio.models import ApiToken, Repo
from tests.optio.spine_support import service_env, start_uvicorn, start_worker, stop, wait_http
from tests.services import redis_url, require_postgres

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TIMEOUT = 30  # generous: the worker may still be starting on a busy machine


def _database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def _http(method: str, url: str, token: str, body=None, content_type="application/json") -> dict:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        return json.loads(resp.read())


async def _recv(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def _scenario(port: int, token: str) -> None:
    base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"

    # A real client sees the close code, not a bare HTTP 403.
    async with ws_connect(f"{ws_base}/ws/events?token=optio_wrong") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd.code == 4401

    async with ws_connect(f"{ws_base}/ws/events?token={token}") as ws:
        # The backfill (the earlier task's two events) tells us the consumer is subscribed.
        assert [(await _recv(ws))["event"] for _ in range(2)] == ["task.created", "task.queued"]
        task = await asyncio.to_thread(
            _http, "POST", f"{base}/api/tasks", token,
            {"title": "Add email validation", "prompt": "Do it", "repoUrl": "https://github.com/acme/webapp"},
        )  # fmt: skip
        created, queued = await _recv(ws), await _recv(ws)
    assert [created["event"], queued["event"]] == ["task.created", "task.queued"]
    assert created["data"]["taskId"] == queued["data"]["taskId"] == task["id"]
    assert queued["data"]["fromState"] == "pending" and queued["seq"] == created["seq"] + 1

    # Resume: only what came after the cursor, then live.
    async with ws_connect(f"{ws_base}/ws/events?token={token}&after={created['seq']}") as ws:
        assert (await _recv(ws))["id"] == queued["id"]
        await asyncio.to_thread(_http, "POST", f"{base}/api/tasks/{task['id']}/transition", token, {"state": "running"})
        running = await _recv(ws)
    assert (running["event"], running["seq"]) == ("task.running", queued["seq"] + 1)

    # The log stream: lines posted through the API, and the task's envelopes.
    path = f"{ws_base}/ws/logs/{task['id']}?token={token}&after=0&eventsAfter={queued['seq']}"
    async with ws_connect(path) as ws:
        assert (await _recv(ws))["id"] == running["id"]  # backfill done: subscribed
        ndjson = b'{"type": "assistant", "content": "Adding a validator"}\nplain output\n'
        await asyncio.to_thread(
            _http, "POST", f"{base}/api/tasks/{task['id']}/logs", token, ndjson, "application/x-ndjson"
        )
        first, second = await _recv(ws), await _recv(ws)
        await asyncio.to_thread(
            _http, "POST", f"{base}/api/tasks/{task['id']}/transition", token,
            {"state": "pr_opened", "prUrl": "https://github.com/acme/webapp/pull/42"},
        )  # fmt: skip
        envelope = await _recv(ws)
    assert [(first["seq"], first["type"]), (second["seq"], second["content"])] == [
        (1, "assistant"),
        (2, "plain output"),
    ]
    assert envelope["event"] == "task.pr_opened"
    assert envelope["data"]["prUrl"] == "https://github.com/acme/webapp/pull/42"


def test_api_call_reaches_a_real_websocket_client_through_uvicorn_celery_and_redis(tmp_path):
    require_postgres()
    redis = redis_url()
    user = get_user_model().objects.create_user("runner")
    token = ApiToken.objects.issue(user, name="e2e")[1]
    repo = Repo.objects.create(url="https://github.com/acme/webapp")
    lifecycle.create_task(repo, "An earlier task", "p")  # so a new client has a backfill

    env = service_env(_database_url(), redis)
    web = worker = None
    try:
        web, port = start_uvicorn(env, tmp_path / "uvicorn.log")
        worker = start_worker(env, tmp_path / "worker.log")
        wait_http(f"http://127.0.0.1:{port}/api/health", proc=web)
        asyncio.run(_scenario(port, token))
    except BaseException:
        for name in ("uvicorn.log", "worker.log"):
            log = tmp_path / name
            if log.exists():
                print(f"--- {name} ---\n{log.read_text()[-4000:]}")
        raise
    finally:
        stop(web, worker)
