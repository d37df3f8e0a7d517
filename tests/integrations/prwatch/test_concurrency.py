"""Races that PostgreSQL decides: hook and poller on one observation, one delivery sent twice at once."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection
from django.test import Client

from integrations.prwatch import watcher
from integrations.prwatch.models import InboundDelivery
from optio.models import Event, Task
from tests.integrations.prwatch.conftest import load_fixture, sign
from tests.services import require_postgres

pytestmark = pytest.mark.django_db(transaction=True)


def together(n: int, fn) -> list:
    """Run fn() on n threads released at the same moment; each thread closes its own connection."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = fn()
        except Exception as exc:  # surfaced by the assertions below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_checks_racing_on_the_same_observation_fire_one_event(gh, pull, task):
    require_postgres()
    gh.add_check_run("acme/webapp", pull.head_sha, "test", status="in_progress", conclusion=None)
    assert watcher.check_task(task.pk).outcome == "observed"  # the watch row exists: the lock is the row lock
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="failure")
    gh.latency = 0.02  # keep the fetches overlapping

    results = together(4, lambda: watcher.check_task(task.pk).outcome)

    assert sorted(r for r in results if r == "transitioned") == ["transitioned"], results
    assert set(results) <= {"transitioned", "unchanged", "stale"}, results
    assert Event.objects.filter(task=task, name="task.needs_attention").count() == 1
    assert Task.objects.get(pk=task.pk).state == "needs_attention"


def test_one_delivery_sent_twice_at_once_is_recorded_once(hook_secret, repo):
    require_postgres()
    body = json.dumps(load_fixture("push")).encode()

    def post():
        return Client().post("/hooks/github", body, content_type="application/json", HTTP_X_GITHUB_EVENT="push",
                             HTTP_X_GITHUB_DELIVERY="same-delivery", HTTP_X_HUB_SIGNATURE_256=sign(body)).json()  # fmt: skip

    results = together(4, post)

    assert sum(1 for r in results if r.get("duplicate")) == 3, results
    assert InboundDelivery.objects.filter(delivery_id="same-delivery").count() == 1
