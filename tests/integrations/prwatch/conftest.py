"""Fixtures for the PR watcher: the fake GitHub with a token, a task waiting on its PR, signed hooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from pathlib import Path

import pytest

from optio import lifecycle, secrets
from optio.models import Task
from tests.fakes.linear import FakeLinear

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "github" / "webhooks"
HOOK_SECRET = "It's a Secret to Everybody"


@pytest.fixture
def linear(settings):
    with FakeLinear() as fake:
        settings.LINEAR_API_URL = fake.url
        yield fake


def pr_url(number: int, full_name: str = "acme/webapp") -> str:
    return f"https://github.com/{full_name}/pull/{number}"


def make_task(repo, pr: str | None = None, *, title: str = "Add email validation", **ticket) -> Task:
    """A task that ran and opened `pr` (or is still running when `pr` is None)."""
    task = lifecycle.create_task(repo, title, "Reject addresses without an @.", **ticket)
    task = lifecycle.transition(task, "running")
    if pr is not None:
        task = lifecycle.transition(task, "pr_opened", pr_url=pr)
    return task


@pytest.fixture
def pull(gh, repo, github_token):
    """An open PR on acme/webapp (number 2: issue 1 is what it fixes)."""
    gh.add_issue("acme/webapp", "Add email validation")
    return gh.add_pull("acme/webapp", "Add email validation", "Closes #1")


@pytest.fixture
def task(repo, pull):
    return make_task(repo, pr_url(pull.number))


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def sign(body: bytes, secret: str = HOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def hook_secret(db):
    secrets.set_secret("GITHUB_WEBHOOK_SECRET", HOOK_SECRET)
    return HOOK_SECRET


class Hooks:
    """Sends deliveries to POST /hooks/github the way GitHub does."""

    def __init__(self, client):
        self.client = client

    def post(self, event: str, payload: dict | bytes, *, delivery: str | None = None, secret: str | None = HOOK_SECRET,
             signature: str | None = None, content_type: str = "application/json"):  # fmt: skip
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {
            "HTTP_X_GITHUB_EVENT": event,
            "HTTP_X_GITHUB_DELIVERY": delivery or str(uuid.uuid4()),
            "HTTP_USER_AGENT": "GitHub-Hookshot/044aadd",
        }
        if signature is not None:
            headers["HTTP_X_HUB_SIGNATURE_256"] = signature
        elif secret is not None:
            headers["HTTP_X_HUB_SIGNATURE_256"] = sign(body, secret)
        return self.client.post("/hooks/github", data=body, content_type=content_type, **headers)


@pytest.fixture
def hooks(db):
    from django.test import Client

    # GitHub sends no CSRF token: the receiver must work with CSRF checks enforced.
    return Hooks(Client(enforce_csrf_checks=True))
