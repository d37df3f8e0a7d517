"""Dispatch: publish on commit, claim once, per-subscriber retry, the sweeper."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from optio import dispatch, events, lifecycle
from optio.celery import app as celery_app
from optio.models import Event
from tests.services import require_postgres

# Real commits: publish dispatches from on_commit, which a test wrapped in a transaction never reaches.
pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    """A subscriber that records the public ids it was called with (and can fail on cue)."""

    def __init__(self, fail: bool = False):
        self.calls: list[str] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        if self.fail:
            raise RuntimeError("receiver is down")
        with self.lock:
            self.calls.append(event.public_id)


@pytest.fixture
def recorder():
    rec = Recorder()
    events.subscribe("test.recorder", rec)
    yield rec
    events.unsubscribe("test.recorder")


def test_publish_dispatches_after_commit_and_marks_the_event(recorder, repo):
    task = lifecycle.create_task(repo, "Add email validation", "Do it")
    created, queued = Event.objects.filter(task=task).order_by("seq")
    assert recorder.calls == [created.public_id, queued.public_id]
    assert created.dispatched_at is not None and queued.dispatched_at is not None
    # Every registered subscriber (other apps' too) ran once and is recorded as done.
    assert sorted(created.subscribers_done) == sorted(events.subscribers())
    assert {"optio.websockets", "test.recorder"} <= set(created.subscribers_done)
    assert queued.stream_seq == created.stream_seq + 1


def test_rollback_sends_nothing(recorder, repo):
    task = lifecycle.create_task(repo, "t", "p")
    before = Event.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        lifecycle.transition(task, "running")
        raise RuntimeError("the request failed after the transition")
    assert Event.objects.count() == before
    assert len(recorder.calls) == 2  # task.created and task.queued only
    task.refresh_from_db()
    assert task.state == "queued"


def test_double_dispatch_delivers_once(recorder, repo):
    task = lifecycle.create_task(repo, "t", "p", queue=False)
    event = Event.objects.get(task=task)
    assert recorder.calls == [event.public_id]
    assert dispatch.dispatch(event.seq) == 0
    assert dispatch.dispatch(event.seq) == 0
    assert recorder.calls == [event.public_id]


def test_event_claimed_by_another_dispatcher_is_left_alone(recorder, repo):
    with dispatch_message_lost():
        task = lifecycle.create_task(repo, "t", "p", queue=False)
    event = Event.objects.get(task=task)
    Event.objects.filter(pk=event.pk).update(claimed_until=timezone.now() + timedelta(seconds=30))
    assert dispatch.dispatch(event.seq) == 0
    assert recorder.calls == []
    # The other dispatcher died: once its lease runs out the event is dispatched again.
    Event.objects.filter(pk=event.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert dispatch.dispatch(event.seq) == 1
    assert recorder.calls == [event.public_id]


def test_dispatch_takes_older_waiting_events_first_in_order(recorder, repo):
    with dispatch_message_lost():
        task = lifecycle.create_task(repo, "t", "p")
        lifecycle.transition(task, "running")
    names = list(Event.objects.filter(task=task).order_by("seq").values_list("name", flat=True))
    last = Event.objects.filter(task=task).order_by("-seq").first()
    assert dispatch.dispatch(last.seq) == 3
    dispatched = Event.objects.filter(task=task).order_by("stream_seq")
    assert [e.name for e in dispatched] == names == ["task.created", "task.queued", "task.running"]
    assert len(recorder.calls) == 3


def test_failing_subscriber_is_retried_alone_and_nothing_is_lost(recorder, repo, time_machine):
    broken = Recorder(fail=True)
    events.subscribe("test.broken", broken)
    try:
        task = lifecycle.create_task(repo, "t", "p", queue=False)
        event = Event.objects.get(task=task)
        assert event.dispatched_at is None
        assert event.attempts == 1
        assert "receiver is down" in event.last_error
        assert set(event.subscribers_done) == set(events.subscribers()) - {"test.broken"}
        assert event.claimed_until > timezone.now()  # backing off
        assert recorder.calls == [event.public_id]

        # Inside the back-off nothing is retried, not even by the sweeper.
        time_machine.move_to(timezone.now() + timedelta(seconds=2))
        assert dispatch.sweep() == 0

        broken.fail = False
        time_machine.move_to(timezone.now() + timedelta(seconds=10))
        assert dispatch.sweep() == 1
        event.refresh_from_db()
        assert event.dispatched_at is not None
        assert broken.calls == [event.public_id]
        assert recorder.calls == [event.public_id]  # not sent twice
    finally:
        events.unsubscribe("test.broken")


def test_backoff_grows_with_attempts(repo, time_machine):
    events.subscribe("test.broken", Recorder(fail=True))
    try:
        task = lifecycle.create_task(repo, "t", "p", queue=False)
        waits = []
        for _ in range(4):
            event = Event.objects.get(task=task)
            waits.append(round((event.claimed_until - timezone.now()).total_seconds()))
            time_machine.move_to(event.claimed_until + timedelta(seconds=1))
            dispatch.sweep()
        assert waits == [5, 10, 20, 40]
    finally:
        events.unsubscribe("test.broken")


def test_sweeper_leaves_fresh_events_to_their_dispatch(recorder, repo, time_machine):
    with dispatch_message_lost():
        lifecycle.create_task(repo, "t", "p", queue=False)
    assert dispatch.sweep() == 0
    time_machine.move_to(timezone.now() + timedelta(seconds=6))
    assert dispatch.sweep() == 1
    assert len(recorder.calls) == 1


def test_sweeper_is_on_the_beat_schedule():
    entry = celery_app.conf.beat_schedule["optio.sweep-events"]
    assert entry["task"] == "optio.sweep_events"
    assert entry["schedule"] <= 10
    assert "optio.sweep_events" in celery_app.tasks


def test_two_concurrent_dispatchers_fan_out_once(repo):
    require_postgres()
    entered = threading.Event()
    release = threading.Event()
    calls = []

    def slow(event):
        calls.append(event.public_id)
        entered.set()
        release.wait(5)

    with dispatch_message_lost():
        task = lifecycle.create_task(repo, "t", "p", queue=False)
    seq = Event.objects.get(task=task).seq
    events.subscribe("test.slow", slow)
    results = []

    def worker():
        try:
            results.append(dispatch.dispatch(seq))
        finally:
            connection.close()

    try:
        first = threading.Thread(target=worker)
        first.start()
        assert entered.wait(5)
        second = threading.Thread(target=worker)
        second.start()
        second.join(5)  # the second dispatcher finds the event claimed and returns at once
        release.set()
        first.join(5)
    finally:
        events.unsubscribe("test.slow")
        release.set()
    assert sorted(results) == [0, 1]
    assert len(calls) == 1


def test_stream_order_follows_commit_order_not_insert_order(repo):
    """An event inserted first but committed last gets the later stream number."""
    require_postgres()
    early = lifecycle.create_task(repo, "early", "p", queue=False)
    late = lifecycle.create_task(repo, "late", "p", queue=False)
    inserted = threading.Event()
    commit = threading.Event()

    def slow_transaction():
        try:
            with transaction.atomic():
                lifecycle.transition(early, "queued")
                inserted.set()
                commit.wait(5)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_transaction)
    thread.start()
    assert inserted.wait(5)
    lifecycle.transition(late, "queued")  # inserted after, committed (and dispatched) first
    commit.set()
    thread.join(5)
    first = Event.objects.get(task=early, name="task.queued")
    second = Event.objects.get(task=late, name="task.queued")
    assert first.seq < second.seq
    assert first.stream_seq > second.stream_seq


class dispatch_message_lost:
    """Commit events without dispatching them (as if the broker dropped the message)."""

    def __enter__(self):
        self._saved = events._enqueue_dispatch
        events._enqueue_dispatch = lambda seq: None

    def __exit__(self, *exc):
        events._enqueue_dispatch = self._saved


def test_one_commit_enqueues_one_dispatch_that_fans_out_all_its_events(recorder, repo, monkeypatch):
    from optio.tasks import dispatch_event

    enqueued = []
    real = dispatch_event.apply_async

    def counting(args, **kwargs):
        enqueued.append(args[0])
        return real(args, **kwargs)

    monkeypatch.setattr(dispatch_event, "apply_async", counting)
    with transaction.atomic():
        tasks = [lifecycle.create_task(repo, f"t{i}", "p") for i in range(3)]
    events_written = Event.objects.filter(task__in=tasks)
    assert events_written.count() == 6
    assert enqueued == [max(e.seq for e in events_written)]
    assert len(recorder.calls) == 6
    assert not events_written.filter(dispatched_at__isnull=True).exists()


def test_a_rolled_back_savepoint_does_not_stop_the_rest_of_the_commit_dispatching(recorder, repo):
    with transaction.atomic():
        first = lifecycle.create_task(repo, "kept", "p")
        with pytest.raises(RuntimeError), transaction.atomic():
            lifecycle.create_task(repo, "rolled back", "p")
            raise RuntimeError("the savepoint fails")
    kept = Event.objects.filter(task=first)
    assert sorted(kept.values_list("name", flat=True)) == ["task.created", "task.queued"]
    assert not kept.filter(dispatched_at__isnull=True).exists()
    assert len(recorder.calls) == 2


def test_created_event_shows_the_task_as_pending_and_queued_follows_it(repo):
    task = lifecycle.create_task(repo, "t", "p")
    created, queued = Event.objects.filter(task=task).order_by("seq")
    assert (created.name, created.data["state"], created.data["fromState"]) == ("task.created", "pending", None)
    assert (queued.name, queued.data["state"], queued.data["fromState"]) == ("task.queued", "queued", "pending")


@pytest.fixture
def queued_not_run(monkeypatch):
    """Dispatch jobs are enqueued (their seqs recorded) but not run, as with a busy worker."""
    from optio.tasks import dispatch_event

    enqueued: list[int] = []
    monkeypatch.setattr(dispatch_event, "apply_async", lambda args, **kwargs: enqueued.append(args[0]))
    return enqueued


def test_commits_while_a_dispatch_job_is_queued_share_it(recorder, repo, queued_not_run):
    for i in range(5):  # five commits
        lifecycle.create_task(repo, f"t{i}", "p", queue=False)
    assert len(queued_not_run) == 1
    assert Event.objects.filter(dispatched_at__isnull=True).count() == 5

    assert dispatch.dispatch(queued_not_run[0]) == 5  # the queued job takes every waiting event
    assert len(recorder.calls) == 5

    # It cleared the flag as it started: the next commit queues a job of its own.
    lifecycle.create_task(repo, "t5", "p", queue=False)
    assert len(queued_not_run) == 2


def test_an_event_committed_while_a_dispatch_runs_is_not_stranded(recorder, repo, queued_not_run):
    lifecycle.create_task(repo, "first", "p", queue=False)
    [job] = queued_not_run
    late = []

    def commit_during_the_claim(event):
        # Runs inside the job's fan-out, i.e. after the job cleared the flag and claimed.
        if not late:
            late.append(lifecycle.create_task(repo, "late", "p", queue=False))

    events.subscribe("test.late", commit_during_the_claim)
    try:
        assert dispatch.dispatch(job) == 1
    finally:
        events.unsubscribe("test.late")
    assert len(queued_not_run) == 2  # the late commit queued its own job
    assert dispatch.dispatch(queued_not_run[1]) == 1
    assert not Event.objects.filter(dispatched_at__isnull=True).exists()


def test_a_dispatch_job_lost_after_enqueue_holds_events_back_only_until_the_flag_expires(
    recorder, repo, queued_not_run
):
    lifecycle.create_task(repo, "a", "p", queue=False)  # its job is lost: never runs
    lifecycle.create_task(repo, "b", "p", queue=False)
    assert len(queued_not_run) == 1
    deadline = timezone.now() + timedelta(seconds=events.DISPATCH_FLAG_TTL + 5)
    while len(queued_not_run) == 1 and timezone.now() < deadline:
        threading.Event().wait(0.2)
        lifecycle.create_task(repo, "c", "p", queue=False)
    assert len(queued_not_run) == 2
    assert dispatch.dispatch(queued_not_run[1]) == Event.objects.count()


def test_a_long_backlog_is_handed_over_to_a_fresh_job(recorder, repo, queued_not_run, monkeypatch):
    monkeypatch.setattr(dispatch, "BATCH", 2)
    monkeypatch.setattr(dispatch, "MAX_BATCHES_PER_JOB", 2)
    with dispatch_message_lost():
        for i in range(5):
            lifecycle.create_task(repo, f"t{i}", "p", queue=False)  # 5 waiting events

    assert dispatch.dispatch(0) == 4  # two batches of two, then it hands over
    assert len(queued_not_run) == 1
    assert dispatch.dispatch(queued_not_run[0]) == 1
    assert len(recorder.calls) == 5


def test_a_batch_calls_a_batch_subscriber_once_and_falls_back_to_one_by_one_when_it_fails(recorder, repo):
    batches, singles = [], []
    bad = set()

    def one(event):
        if event.public_id in bad:
            raise RuntimeError("this event cannot be handled")
        singles.append(event.public_id)

    def many(batch):
        batches.append([e.public_id for e in batch])
        for event in batch:
            one(event)

    events.subscribe("test.batch", one, batch=many)
    try:
        with dispatch_message_lost():
            tasks = [lifecycle.create_task(repo, f"t{i}", "p", queue=False) for i in range(3)]
        ids = list(Event.objects.filter(task__in=tasks).order_by("seq").values_list("public_id", flat=True))
        assert dispatch.dispatch(0) == 3
        assert batches == [ids] and singles == ids  # one call for the batch

        with dispatch_message_lost():
            tasks = [lifecycle.create_task(repo, f"u{i}", "p", queue=False) for i in range(3)]
        ids = list(Event.objects.filter(task__in=tasks).order_by("seq").values_list("public_id", flat=True))
        bad.add(ids[1])
        batches.clear(), singles.clear()
        assert dispatch.dispatch(0) == 3
    finally:
        events.unsubscribe("test.batch")
    # The batch failed and rolled back; then each event alone: only the bad one is left to retry.
    assert batches == [ids] and singles == [ids[0], ids[0], ids[2]]
    failed = Event.objects.get(public_id=ids[1])
    assert failed.dispatched_at is None and "test.batch" not in failed.subscribers_done
    assert "test.recorder" in failed.subscribers_done  # the other subscriber is not called again
    assert "cannot be handled" in failed.last_error
    assert Event.objects.filter(public_id__in=[ids[0], ids[2]], dispatched_at__isnull=False).count() == 2
    assert recorder.calls.count(ids[1]) == 1


def test_the_dispatcher_reads_only_the_batch_it_takes_from_a_large_backlog():
    """The claim walks the partial index of waiting events in seq order: it must not read every
    waiting event to sort them, nor walk past every dispatched one (which a production table
    holds millions of), whatever the planner's estimates. On a fresh database (bench_webhooks)
    statistics said few events waited during a burst, and each batch read the whole backlog
    with a bitmap scan and sorted it; a high random_page_cost tips the planner the same way here."""
    require_postgres()
    now = timezone.now()
    data = {"taskId": "t", "title": "Add email validation", "state": "completed"}
    Event.objects.bulk_create([Event(name="task.completed", data=data, dispatched_at=now) for _ in range(5000)])
    Event.objects.bulk_create([Event(name="task.completed", data=data) for _ in range(2000)])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL random_page_cost = 100")
        dispatch._begin_claim()
        plan = dispatch.waiting(Q(), now)[: dispatch.BATCH].explain(analyze=True)
    assert "Index Scan using event_waiting" in plan and "Sort" not in plan, plan
    # What it read: a batch of rows, not the 2,000 waiting ones.
    read = [int(n) for n in re.findall(r"actual time=\S+ rows=(\d+)", plan)]
    assert read and max(read) == dispatch.BATCH, plan
