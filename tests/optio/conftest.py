"""Fixtures for the core (optio) tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from optio.auth import reset_login_failures
from optio.lifecycle import TRANSITIONS
from optio.models import Task, TaskState

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _forget_failed_logins_from_the_test_client():
    # Django's test client and schemathesis both come from 127.0.0.1; with Redis the counter
    # would outlive the test (and the run) and block later sign-ins from that address.
    yield
    reset_login_failures("127.0.0.1", "admin")
    reset_login_failures("")  # schemathesis' WSGI requests carry no address


@pytest.fixture
def make_task(repo):
    """A task put straight into `state` (set-up only: real code moves tasks through optio.lifecycle)."""

    def make(state: str = TaskState.QUEUED, **fields) -> Task:
        fields.setdefault("title", f"Task in {state}")
        fields.setdefault("prompt", "Do the thing")
        return Task.objects.create(repo=fields.pop("repo", repo), state=state, **fields)

    return make


def all_state_pairs() -> list[tuple[str, str, bool]]:
    """Every (from, to) pair of task states and whether the lifecycle table allows it."""
    return [(a, b, b in TRANSITIONS[a]) for a in TaskState.values for b in TaskState.values]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment for a manage.py subprocess: this one minus every Optio/Django variable."""
    drop = ("DATABASE_URL", "REDIS_URL", "DJANGO_", "OPTIO_", "GITHUB_API_URL", "LINEAR_API_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(overrides)
    return env


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
