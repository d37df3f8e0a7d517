"""The task lifecycle: the transition table, compare-and-set, and the event written with each change."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from optio import lifecycle
from optio.lifecycle import TRANSITIONS, InvalidTransition, TransitionConflict
from optio.models import Event, Task, TaskState
from tests.optio.conftest import all_state_pairs
from tests.services import require_postgres

S = TaskState

# DESIGN.md's table, written out again on purpose: if someone edits TRANSITIONS, this disagrees.
DESIGN_TABLE = {
    "pending": {"queued", "cancelled", "failed"},
    "queued": {"running", "cancelled", "failed"},
    "running": {"pr_opened", "needs_attention", "completed", "failed", "cancelled"},
    "pr_opened": {"completed", "needs_attention", "failed", "cancelled"},
    "needs_attention": {"queued", "running", "pr_opened", "completed", "failed", "cancelled"},
    "failed": {"queued"},
    "completed": set(),
    "cancelled": set(),
}


def test_transition_table_is_the_one_in_the_design():
    assert {str(k): {str(v) for v in vs} for k, vs in TRANSITIONS.items()} == DESIGN_TABLE


ALLOWED = [(a, b) for a, b, ok in all_state_pairs() if ok]
FORBIDDEN = [(a, b) for a, b, ok in all_state_pairs() if not ok]


@pytest.mark.parametrize(("from_state", "to"), ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
def test_allowed_transition_changes_state_and_writes_its_event(make_task, from_state, to):
    task = make_task(from_state)

    moved = lifecycle.transition(task, to)

    assert moved.state == to
    assert Task.objects.get(pk=task.pk).state == to
    event = Event.objects.get(task=task)
    assert event.name == f"task.{to}"
    assert event.data["state"] == to
    assert event.data["fromState"] == from_state
    assert event.data["taskId"] == str(task.pk)


@pytest.mark.parametrize(("from_state", "to"), FORBIDDEN, ids=[f"{a}->{b}" for a, b in FORBIDDEN])
def test_forbidden_transition_raises_and_changes_nothing(make_task, from_state, to):
    task = make_task(from_state)

    with pytest.raises(InvalidTransition) as info:
        lifecycle.transition(task, to)

    assert info.value.allowed == sorted(DESIGN_TABLE[from_state])
    assert f"from {from_state} to {to}" in str(info.value)
    assert Task.objects.get(pk=task.pk).state == from_state
    assert not Event.objects.filter(task=task).exists()


def test_unknown_target_state_is_an_invalid_transition(make_task):
    task = make_task(S.RUNNING)
    with pytest.raises(InvalidTransition):
        lifecycle.transition(task, "exploded")
    assert Task.objects.get(pk=task.pk).state == S.RUNNING


def test_transition_refuses_to_change_fields_outside_the_lifecycle(make_task):
    task = make_task(S.RUNNING)
    with pytest.raises(TypeError):
        lifecycle.transition(task, S.COMPLETED, title="renamed")
    assert Task.objects.get(pk=task.pk).state == S.RUNNING


def test_stale_copy_loses_with_a_conflict_naming_the_actual_state(make_task):
    task = make_task(S.QUEUED)
    stale = Task.objects.get(pk=task.pk)
    lifecycle.transition(task, S.RUNNING)

    with pytest.raises(TransitionConflict) as info:
        lifecycle.transition(stale, S.CANCELLED)

    assert info.value.actual == S.RUNNING
    assert "reload and retry" in str(info.value)
    assert Task.objects.get(pk=task.pk).state == S.RUNNING
    assert [e.name for e in Event.objects.filter(task=task)] == ["task.running"]


def test_create_task_emits_created_then_queued(repo):
    task = lifecycle.create_task(repo, "Add email validation", "Validate emails on sign-up")
    assert task.state == S.QUEUED
    assert [(e.name, e.data["fromState"]) for e in Event.objects.filter(task=task)] == [
        ("task.created", None),
        ("task.queued", "pending"),
    ]


def test_create_task_without_queueing_stays_pending(repo):
    task = lifecycle.create_task(repo, "t", "p", queue=False)
    assert Task.objects.get(pk=task.pk).state == S.PENDING
    assert [e.name for e in Event.objects.filter(task=task)] == ["task.created"]


def test_one_active_task_per_ticket_is_a_database_constraint(repo):
    first = lifecycle.create_task(repo, "t", "p", ticket_source="github", ticket_external_id="42")
    with pytest.raises(IntegrityError), transaction.atomic():
        lifecycle.create_task(repo, "t again", "p", ticket_source="github", ticket_external_id="42")
    # The failed attempt left nothing behind: no task, no event.
    assert Task.objects.filter(ticket_external_id="42").count() == 1
    lifecycle.cancel(first)
    second = lifecycle.create_task(repo, "t again", "p", ticket_source="github", ticket_external_id="42")
    assert second.pk != first.pk


def test_tasks_without_a_ticket_are_not_limited(repo):
    for _ in range(3):
        lifecycle.create_task(repo, "manual", "p")
    assert Task.objects.filter(ticket_source="").count() == 3


def test_running_sets_started_at_once_and_finishing_sets_finished_at(make_task):
    task = make_task(S.QUEUED)
    task = lifecycle.transition(task, S.RUNNING)
    started = Task.objects.get(pk=task.pk).started_at
    assert started is not None
    task = lifecycle.transition(task, S.NEEDS_ATTENTION, attention_reason="ci_failed")
    task = lifecycle.transition(task, S.RUNNING)
    assert Task.objects.get(pk=task.pk).started_at == started
    assert Task.objects.get(pk=task.pk).attention_reason == ""  # leaving needs_attention clears the reason
    task = lifecycle.transition(task, S.COMPLETED, cost_usd="0.35", pr_url="https://github.com/acme/webapp/pull/42")
    stored = Task.objects.get(pk=task.pk)
    assert stored.finished_at is not None
    assert stored.cost_usd == Decimal("0.35")
    assert stored.pr_url == "https://github.com/acme/webapp/pull/42"
    event = Event.objects.filter(task=task).last()
    assert event.data["costUsd"] == "0.35"
    assert event.data["prUrl"] == "https://github.com/acme/webapp/pull/42"


def test_retry_of_a_failed_task_clears_its_error_and_finish_time(make_task):
    task = make_task(S.RUNNING)
    task = lifecycle.transition(task, S.FAILED, error="agent crashed")
    assert Task.objects.get(pk=task.pk).finished_at is not None

    task = lifecycle.retry(task)

    stored = Task.objects.get(pk=task.pk)
    assert (stored.state, stored.error, stored.finished_at) == (S.QUEUED, "", None)
    assert Event.objects.filter(task=task).last().data["fromState"] == "failed"


def test_a_rolled_back_transaction_takes_the_state_change_and_its_event_with_it(make_task):
    task = make_task(S.QUEUED)
    with pytest.raises(RuntimeError), transaction.atomic():
        lifecycle.transition(task, S.RUNNING)
        raise RuntimeError("caller failed after the transition")
    assert Task.objects.get(pk=task.pk).state == S.QUEUED
    assert not Event.objects.filter(task=task).exists()


# --- Concurrency on PostgreSQL: real threads, real connections ---------------------------


def _in_thread(fn, results: list, *args):
    try:
        results.append(fn(*args))
    except Exception as exc:  # collected and asserted on by the test
        results.append(exc)
    finally:
        connection.close()


def _wait_until_blocked_on_a_lock(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
            if row and row[0] == "Lock":
                return
            time.sleep(0.02)
    raise AssertionError("the second transition never waited for the first one's row lock")


@pytest.mark.django_db(transaction=True)
def test_concurrent_transitions_on_postgres_exactly_one_wins(repo):
    """The loser's UPDATE waits on the winner's row lock, then finds the state changed."""
    require_postgres()
    task = lifecycle.create_task(repo, "race", "p")  # queued
    first_done, release_first = threading.Event(), threading.Event()
    second_pid: list[int] = []
    results_a: list = []
    results_b: list = []

    def winner():
        copy = Task.objects.select_related("repo").get(pk=task.pk)
        with transaction.atomic():
            moved = lifecycle.transition(copy, S.RUNNING)
            first_done.set()
            release_first.wait(10)  # hold the row lock while the other thread tries
        return moved

    def loser(copy):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            second_pid.append(cursor.fetchone()[0])
        return lifecycle.transition(copy, S.CANCELLED)

    stale = Task.objects.select_related("repo").get(pk=task.pk)  # read before either change
    a = threading.Thread(target=_in_thread, args=(winner, results_a))
    a.start()
    assert first_done.wait(10)
    b = threading.Thread(target=_in_thread, args=(loser, results_b, stale))
    b.start()
    deadline = time.monotonic() + 10
    while not second_pid and time.monotonic() < deadline:
        time.sleep(0.01)
    _wait_until_blocked_on_a_lock(second_pid[0])
    release_first.set()
    a.join(10)
    b.join(10)

    assert isinstance(results_a[0], Task) and results_a[0].state == S.RUNNING
    assert isinstance(results_b[0], TransitionConflict), results_b
    assert results_b[0].actual == S.RUNNING
    assert Task.objects.get(pk=task.pk).state == S.RUNNING
    names = list(Event.objects.filter(task_id=task.pk).values_list("name", flat=True))
    assert names == ["task.created", "task.queued", "task.running"]


@pytest.mark.django_db(transaction=True)
def test_racing_threads_on_postgres_one_winner_per_round(repo):
    require_postgres()
    targets = [S.RUNNING, S.CANCELLED, S.FAILED, S.RUNNING]
    for _ in range(5):
        task = lifecycle.create_task(repo, "race", "p")
        copies = [Task.objects.select_related("repo").get(pk=task.pk) for _ in targets]
        barrier = threading.Barrier(len(targets))
        results: list = []

        def attempt(copy, to):
            barrier.wait(10)
            return lifecycle.transition(copy, to)

        threads = [
            threading.Thread(target=_in_thread, args=(attempt, results, c, t))
            for c, t in zip(copies, targets, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)

        winners = [r for r in results if isinstance(r, Task)]
        losers = [r for r in results if isinstance(r, TransitionConflict)]
        assert len(winners) == 1 and len(losers) == len(targets) - 1, results
        final = Task.objects.get(pk=task.pk).state
        assert final == winners[0].state
        assert Event.objects.filter(task_id=task.pk, name=f"task.{final}").count() == 1
        assert Event.objects.filter(task_id=task.pk).count() == 3  # created, queued, the winner's
