"""Exactly once under concurrency, on PostgreSQL with real connections (one per thread).

- four syncs of one provider at once: the lease lets one work, the others find it taken;
- four overlapping providers at once, and the same provider with its lease bypassed: the
  database constraint `task_one_active_per_ticket` makes the losers count the ticket as existing;
- a manual assign (the GitHub Issues service) racing a sync of the same issues.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from integrations.github import assign
from optio.models import Repo, Task
from tests.fakes.linear import seed
from tests.services import require_postgres
from tickets import services, sync
from tickets.models import TicketProvider

from .conftest import LINEAR_KEY

pytestmark = pytest.mark.django_db(transaction=True)
T0 = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _postgres():
    require_postgres()


def in_threads(*fns):
    """Run each function on its own thread (own database connection), released together."""
    barrier = threading.Barrier(len(fns))
    results: list = [None] * len(fns)
    errors: list = []

    def work(i, fn):
        try:
            barrier.wait(timeout=10)
            results[i] = fn()
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    assert errors == []
    return results


def assert_one_task_per_ticket(expected: int, source: str) -> None:
    keys = list(Task.objects.filter(ticket_source=source).values_list("repo_id", "ticket_external_id"))
    assert len(keys) == len(set(keys)) == expected


def github_issues(gh, repo: Repo, count: int) -> None:
    for n in range(count):
        gh.add_issue(repo.full_name, f"Issue {n}", labels=["optio"], updated_at=T0 + timedelta(seconds=n))


def test_four_concurrent_syncs_of_one_github_provider_make_one_task_per_ticket(gh, webapp):
    github_issues(gh, webapp, 150)
    gh.latency = 0.02  # keeps the syncs overlapping
    provider = services.create_provider("github", {"repos": [webapp.url], "labels": ["optio"]}).provider
    results = in_threads(*[lambda: sync.sync_provider(provider.pk)] * 4)
    statuses = sorted(r.status for r in results)
    assert "ok" in statuses and set(statuses) <= {"ok", "locked"}
    assert sum(r.stats.created for r in results) == 150
    assert_one_task_per_ticket(150, "github")
    assert TicketProvider.objects.get(pk=provider.pk).lease_token == ""


def test_four_concurrent_syncs_of_one_linear_provider_make_one_task_per_ticket(linear, team, webapp):
    seed(linear, team, 120)
    linear.latency = 0.02
    config = {"apiKey": LINEAR_KEY, "teamId": team.id, "repoUrl": webapp.url}
    provider = services.create_provider("linear", config).provider
    results = in_threads(*[lambda: sync.sync_provider(provider.pk)] * 4)
    assert sum(r.stats.created for r in results) == 120
    assert_one_task_per_ticket(120, "linear")


def test_four_overlapping_providers_syncing_at_once_make_one_task_per_ticket(gh, webapp):
    github_issues(gh, webapp, 120)
    gh.latency = 0.01
    providers = [
        services.create_provider("github", {"repos": [webapp.url], "labels": labels}).provider
        for labels in (["optio"], ["optio", "bug"], [], ["optio"])
    ]
    results = in_threads(*[(lambda p=p: sync.sync_provider(p.pk)) for p in providers])
    assert [r.status for r in results] == ["ok"] * 4
    assert sum(r.stats.created for r in results) == 120
    assert sum(r.stats.existing for r in results) >= 3 * 120  # every loser counted the ticket as existing
    assert_one_task_per_ticket(120, "github")


def test_the_constraint_alone_holds_when_syncs_share_a_lease(linear, team, webapp):
    # As if leases had expired under four slow workers: nothing but the database stops duplicates.
    seed(linear, team, 100)
    linear.latency = 0.01
    config = {"apiKey": LINEAR_KEY, "teamId": team.id, "repoUrl": webapp.url}
    provider = services.create_provider("linear", config).provider
    token = sync.acquire_lease(provider.pk)
    results = in_threads(*[lambda: sync.run(TicketProvider.objects.get(pk=provider.pk), token)] * 4)
    assert [r.status for r in results] == ["ok"] * 4
    assert sum(r.stats.created for r in results) == 100
    assert_one_task_per_ticket(100, "linear")


def test_manual_assigns_racing_a_sync_yield_one_task_per_issue(gh, webapp):
    github_issues(gh, webapp, 30)
    webapp.writeback_enabled = False  # the race is about tasks, not comments
    webapp.save()
    gh.latency = 0.005
    provider = services.create_provider("github", {"repos": [webapp.url]}).provider

    def assign_in(order):
        def run():
            repo = Repo.objects.get(pk=webapp.pk)
            return [assign.assign(repo, n) for n in order]

        return run

    numbers = list(range(1, 31))
    orders = [numbers, numbers[::-1], numbers[15:] + numbers[:15]]  # three people clicking through the list
    synced, *assigned = in_threads(lambda: sync.sync_provider(provider.pk), *[assign_in(o) for o in orders])
    assert synced.status == "ok"
    clicks = [a for batch in assigned for a in batch]
    assert synced.stats.created + sum(1 for a in clicks if a.created) == 30
    for a in clicks:  # a click that lost the race got the winner's task back
        assert a.task.ticket_external_id == str(a.issue["number"]) and a.task.state == "queued"
    assert_one_task_per_ticket(30, "github")
