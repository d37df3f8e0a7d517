"""Fixtures for webhook tests: a recording receiver, endpoints, and events through the real spine."""

from __future__ import annotations

import pytest

from optio import lifecycle
from tests.fakes.receiver import Receiver
from webhooks import endpoints

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def rx():
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def fast_settings(settings):
    # Short timeouts so fault tests take fractions of a second; everything else as shipped.
    settings.OPTIO_WEBHOOK_TIMEOUT = 1.0
    settings.OPTIO_WEBHOOK_CONNECT_TIMEOUT = 1.0
    return settings


@pytest.fixture
def make_webhook(db, fast_settings):
    def make(url: str, events=("*",), secret: str = SECRET, **kwargs):
        return endpoints.create(url=url, events=list(events), secret=secret, **kwargs)

    return make


@pytest.fixture
def hook(make_webhook, rx):
    return make_webhook(rx.url)


@pytest.fixture
def emit(django_capture_on_commit_callbacks, repo):
    """Create a task through the lifecycle (task.created, task.queued) and run what commits trigger:
    dispatch → webhooks subscriber → delivery task, all eager as in embedded mode."""

    def run(title: str = "Add email validation", *, to: tuple[str, ...] = ()):
        with django_capture_on_commit_callbacks(execute=True):
            task = lifecycle.create_task(repo, title, "Do it")
            for state in to:
                task = lifecycle.transition(task, state)
        return task

    return run


@pytest.fixture
def make_delivery(db):
    """A delivery of a fresh task.completed event to `webhook`, created by the subscriber's own
    code but not queued: tests drive `delivery.attempt` themselves."""
    from optio.models import Event
    from webhooks import delivery
    from webhooks.models import Delivery

    counter = iter(range(1, 10_000))

    def make(webhook, name: str = "task.completed") -> Delivery:
        event = Event.objects.create(name=name, data={"taskId": f"t-{next(counter)}", "title": "Add email validation"})
        delivery.create_for_event(event, [webhook], enqueue=False)
        return Delivery.objects.get(event=event, webhook=webhook)

    return make
