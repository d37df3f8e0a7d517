"""The sync engine itself: the lease, beat scheduling, crash safety, ended tickets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from optio import lifecycle
from optio.celery import app
from optio.models import Task
from tests.fakes.linear import seed
from tickets import sync, tasks
from tickets.models import TicketProvider
from tickets.providers.linear import LinearSource


def test_beat_runs_the_sync_every_configured_interval():
    entry = app.conf.beat_schedule["tickets-sync"]
    assert entry["task"] == "tickets.sync_due"
    assert entry["schedule"] == float(settings.OPTIO_TICKET_SYNC_INTERVAL)
    assert "tickets.sync_due" in app.tasks and "tickets.sync_provider" in app.tasks


def test_the_database_scheduler_stores_the_sync_entry_where_the_admin_edits_it(db):
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    # What DatabaseScheduler.setup_schedule does for each entry of app.conf.beat_schedule.
    DatabaseScheduler.Entry.from_entry("tickets-sync", app=app, **app.conf.beat_schedule["tickets-sync"])
    stored = PeriodicTask.objects.get(name="tickets-sync")
    assert stored.task == "tickets.sync_due"
    assert stored.interval.every == settings.OPTIO_TICKET_SYNC_INTERVAL and stored.interval.period == "seconds"
    assert stored.expire_seconds == settings.OPTIO_TICKET_SYNC_INTERVAL


def test_the_lease_lets_one_sync_in_at_a_time_and_expires(linear_provider):
    token = sync.acquire_lease(linear_provider.pk)
    assert token
    assert sync.acquire_lease(linear_provider.pk) is None
    assert sync.sync_provider(linear_provider.pk).status == "locked"
    # A worker that died keeps the lease only until it expires.
    TicketProvider.objects.filter(pk=linear_provider.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert sync.sync_provider(linear_provider.pk).status == "ok"
    assert TicketProvider.objects.get(pk=linear_provider.pk).lease_token == ""  # released after the run


def test_a_sync_whose_lease_was_taken_over_stops_without_writing(linear, team, linear_provider):
    seed(linear, team, 3)
    token = sync.acquire_lease(linear_provider.pk)
    TicketProvider.objects.filter(pk=linear_provider.pk).update(lease_token="someone-else")
    result = sync.run(TicketProvider.objects.get(pk=linear_provider.pk), token)
    assert result.status == "interrupted"
    assert Task.objects.count() == 0
    assert TicketProvider.objects.get(pk=linear_provider.pk).cursor == {}


def test_a_crash_while_storing_a_page_keeps_nothing_of_it_and_a_rerun_creates_each_task_once(
    linear, team, linear_provider, monkeypatch
):
    seed(linear, team, 120)
    calls = {"n": 0}
    real = lifecycle.create_task

    def create_then_crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 60:  # in the middle of page 2
            raise RuntimeError("worker killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "create_task", create_then_crash)
    result = sync.sync_provider(linear_provider.pk)
    assert result.status == "failed" and result.error_kind == "error"
    assert Task.objects.count() == 50  # page 1 only: page 2's tasks went with its transaction
    provider = TicketProvider.objects.get(pk=linear_provider.pk)
    assert "unexpected error (RuntimeError)" in provider.last_error

    monkeypatch.setattr(lifecycle, "create_task", real)
    assert sync.sync_provider(linear_provider.pk).stats.created == 70
    assert Task.objects.values("ticket_external_id").distinct().count() == Task.objects.count() == 120


def test_a_linear_issue_whose_task_ended_is_not_synced_again(linear, team, linear_provider):
    issue = linear.add_issue(team, "Do it once")
    sync.sync_provider(linear_provider.pk)
    task = Task.objects.get()
    for state in ("running", "completed"):
        task = lifecycle.transition(task, state)
    linear.update_issue(issue, title="Do it once (edited)")
    result = sync.sync_provider(linear_provider.pk)
    assert (result.stats.created, result.stats.existing) == (0, 1)
    assert Task.objects.count() == 1


def test_changing_the_filters_mid_sync_stops_that_sync(linear, team, linear_provider):
    seed(linear, team, 3)
    token = sync.acquire_lease(linear_provider.pk)
    provider = TicketProvider.objects.get(pk=linear_provider.pk)
    TicketProvider.objects.filter(pk=provider.pk).update(config={**provider.config, "labels": ["new"]})
    assert sync.run(provider, token).status == "interrupted"
    assert Task.objects.count() == 0


def test_failures_count_up_and_a_success_resets_them(linear, team, linear_provider):
    linear.add_issue(team, "x")
    linear.fail(503, times=2)
    for expected in (1, 2):
        sync.sync_provider(linear_provider.pk)
        assert TicketProvider.objects.get(pk=linear_provider.pk).consecutive_failures == expected
    sync.sync_provider(linear_provider.pk)
    provider = TicketProvider.objects.get(pk=linear_provider.pk)
    assert (provider.consecutive_failures, provider.last_error, provider.enabled) == (0, "", True)
    assert provider.last_sync_at is not None and provider.last_sync_stats["created"] == 1


def test_sync_due_enqueues_each_enabled_provider_that_is_due(linear, team, make_provider, webapp):
    linear.add_issue(team, "x")
    due = make_provider("linear", apiKey="lin_api_test_key", repoUrl=webapp.url)
    off = make_provider("linear", apiKey="lin_api_test_key", repoUrl=webapp.url)
    waiting = make_provider("linear", apiKey="lin_api_test_key", repoUrl=webapp.url)
    busy = make_provider("linear", apiKey="lin_api_test_key", repoUrl=webapp.url)
    TicketProvider.objects.filter(pk=off.pk).update(enabled=False)
    TicketProvider.objects.filter(pk=waiting.pk).update(next_sync_after=timezone.now() + timedelta(minutes=5))
    TicketProvider.objects.filter(pk=busy.pk).update(
        lease_token="x", lease_expires_at=timezone.now() + timedelta(minutes=1)
    )
    assert tasks.sync_due.delay().get() == 1  # eager: the one due provider synced inline
    synced = {p.pk for p in TicketProvider.objects.all() if p.last_sync_at}
    assert synced == {due.pk}
    assert Task.objects.count() == 1


def test_the_sync_task_takes_an_id_and_reports_the_outcome(linear_provider):
    assert tasks.sync_provider.delay(linear_provider.pk).get() == "ok"
    assert tasks.sync_provider.delay(987654).get() == "locked"  # no such provider: nothing to do


@pytest.mark.parametrize(
    "config, expected",
    [
        ({}, [{"state": {"type": {"nin": ["completed", "canceled"]}}}]),
        ({"teamId": "ENG"}, [{"team": {"key": {"eqIgnoreCase": "ENG"}}}]),
        ({"projectId": "5c1a2b3c4d5e"}, [{"project": {"slugId": {"eq": "5c1a2b3c4d5e"}}}]),
        ({"labels": ["a", "b"]},
         [{"labels": {"some": {"or": [{"name": {"eqIgnoreCase": "a"}}, {"name": {"eqIgnoreCase": "b"}}]}}}]),
    ],
)  # fmt: skip
def test_linear_filters_are_built_from_the_config(config, expected):
    clauses = LinearSource().issue_filter(config, None)["and"]
    for clause in expected:
        assert clause in clauses
