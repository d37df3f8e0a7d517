"""Smoke test of production mode: the three Procfile processes against PostgreSQL and Redis."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.db import connection

from tests.optio.conftest import ROOT, clean_env, free_port
from tests.optio.test_secrets import _database_url
from tests.services import redis_url, require_postgres

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_for(what: str, check, logs: list[Path], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout:.0f} s\n" + "\n".join(p.read_text()[-2000:] for p in logs))


@pytest.mark.django_db(transaction=True)
def test_web_worker_and_beat_run_as_separate_processes(tmp_path):
    require_postgres()
    env = clean_env(
        DATABASE_URL=_database_url(),
        REDIS_URL=redis_url(),
        OPTIO_VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="optio.settings",
    )
    port = free_port()
    worker_name = f"smoke-{uuid.uuid4().hex[:8]}@localhost"
    logs = {name: tmp_path / f"{name}.log" for name in ("web", "worker", "beat")}
    procs = [
        _start(
            [str(BIN / "uvicorn"), "optio.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
            env,
            logs["web"],
        ),
        _start(
            [str(BIN / "celery"), "-A", "optio", "worker", "-n", worker_name, "--pool", "solo", "-l", "info"],
            env,
            logs["worker"],
        ),
        _start(
            [str(BIN / "celery"), "-A", "optio", "beat", "-l", "info", "-s", str(tmp_path / "beat")], env, logs["beat"]
        ),
    ]
    try:

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as resp:
                body = json.loads(resp.read())
            assert body == {"status": "ok", "mode": "production", "database": "ok", "broker": "ok"}
            return True

        _wait_for("the web process did not answer /api/health", healthy, list(logs.values()))

        def worker_answers() -> bool:
            ping = subprocess.run(
                [str(BIN / "celery"), "-A", "optio", "inspect", "ping", "-d", worker_name, "-t", "3"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            return ping.returncode == 0 and "pong" in ping.stdout

        _wait_for("the worker did not answer a ping", worker_answers, [logs["worker"]])

        def beat_wrote_its_schedule() -> bool:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM django_celery_beat_periodictask")
                return cursor.fetchone()[0] > 0

        # django-celery-beat's DatabaseScheduler copies the schedule into the database (editable in the admin).
        _wait_for("beat did not write its schedule to the database", beat_wrote_its_schedule, [logs["beat"]])
        assert "DatabaseScheduler" in logs["beat"].read_text()
        assert all(p.poll() is None for p in procs), "a process exited early"
    finally:
        for proc in procs:
            _stop(proc)
        connection.close()
