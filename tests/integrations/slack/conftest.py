"""Slack fixtures: a live fake Slack server and a repository wired to one of its webhooks."""

from __future__ import annotations

from decimal import Decimal

import pytest

from optio import crypto, lifecycle
from optio.models import Task
from tests.fakes.slack import FakeSlack


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def hook_url(slack):
    return slack.webhook_url()


@pytest.fixture
def slack_repo(repo, hook_url):
    repo.slack_enabled = True
    repo.slack_webhook_url_encrypted = crypto.encrypt(hook_url)
    repo.save()
    return repo


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run on-commit callbacks (dispatch, then the Slack enqueue) as a real commit would."""

    def run(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return run


def running_task(repo, title="Add email validation", **fields) -> Task:
    task = lifecycle.create_task(repo, title, "Do it", **fields)
    return lifecycle.transition(task, "running")


def drive(task: Task, *states: str, **changes) -> Task:
    """Move `task` through `states`; `changes` go with the last one."""
    for i, state in enumerate(states):
        task = lifecycle.transition(task, state, **(changes if i == len(states) - 1 else {}))
    return task


PR = "https://github.com/acme/webapp/pull/42"
COST = Decimal("0.35")
