"""Smoke test of embedded mode as a newcomer runs it: migrate, bootstrap, `manage.py serve`.

A real process on a free port, with a fresh var dir and no DATABASE_URL or REDIS_URL: SQLite,
the in-process broker, worker and beat threads, and the in-process channel layer.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.optio.conftest import ROOT, clean_env, free_port, manage

pytestmark = pytest.mark.slow


def _http(method: str, url: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A served embedded Optio: (base URL, API token). Stopped with SIGTERM afterwards."""
    var_dir = tmp_path_factory.mktemp("embedded-var")
    env = clean_env(OPTIO_VAR_DIR=str(var_dir))
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    migrated = manage("migrate", "--noinput", "-v0", env=env, timeout=180)
    assert migrated.returncode == 0, migrated.stderr
    boot = manage("bootstrap", "--url", base, env=env)
    assert boot.returncode == 0, boot.stderr
    token = re.search(r"API token:\s+(optio_\S+)", boot.stdout)[1]
    assert (var_dir / "optio.sqlite3").exists()

    log = (var_dir / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (var_dir / "serve.log").read_text()
            try:
                if _http("GET", f"{base}/api/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve did not answer /api/health within 60 s"
            time.sleep(0.2)
        yield base, token, server, var_dir
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)
        log.close()


def test_health_answers_in_embedded_mode(embedded):
    base, *_ = embedded
    status, body = _http("GET", f"{base}/api/health")
    assert status == 200
    assert body == {"status": "ok", "mode": "embedded", "database": "ok", "broker": "ok"}


def test_api_needs_the_bootstrap_token_and_accepts_it(embedded):
    base, token, *_ = embedded
    assert _http("GET", f"{base}/api/tasks")[0] == 401
    status, body = _http("GET", f"{base}/api/tasks", token)
    assert (status, body["count"]) == (200, 0)


def test_websocket_with_the_token_opens_and_receives_a_task_event(embedded):
    """The REST call commits an event; the worker thread dispatches it to the open socket."""
    base, token, *_ = embedded
    ws_url = base.replace("http://", "ws://") + f"/ws/events?token={token}"
    with connect(ws_url, open_timeout=10) as ws:
        assert _http("POST", f"{base}/api/repos", token, {"repoUrl": "https://github.com/acme/webapp"})[0] == 201
        status, task = _http(
            "POST",
            f"{base}/api/tasks",
            token,
            {"title": "Smoke", "prompt": "p", "repoUrl": "git@github.com:acme/webapp.git"},
        )
        assert status == 201, task
        deadline = time.monotonic() + 15
        seen = []
        while time.monotonic() < deadline:
            frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            seen.append(frame.get("event"))
            if frame.get("event") == "task.queued" and frame["data"]["taskId"] == task["id"]:
                break
        else:
            raise AssertionError(f"no task.queued frame within 15 s; saw {seen}")
        assert frame["id"].startswith("evt_")
        assert isinstance(frame["seq"], int)


def test_websocket_with_a_bad_token_closes_with_4401(embedded):
    base, *_ = embedded
    ws_url = base.replace("http://", "ws://") + "/ws/events?token=optio_not-a-token"
    try:
        with connect(ws_url, open_timeout=10) as ws, pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    except InvalidStatus as exc:  # the server refused the handshake instead of closing with a code
        raise AssertionError(
            f"handshake rejected with HTTP {exc.response.status_code}; clients need close code 4401, "
            "so the consumer must accept before closing"
        ) from None
    assert info.value.rcvd is not None and info.value.rcvd.code == 4401


def test_serve_stops_cleanly_on_sigterm(embedded):
    *_, server, var_dir = embedded
    server.send_signal(signal.SIGTERM)
    assert server.wait(20) == 0, (var_dir / "serve.log").read_text()
    assert "Traceback" not in (var_dir / "serve.log").read_text()
