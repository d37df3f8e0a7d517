"""/ws/events and /ws/logs/<taskId> through the real ASGI app (WebsocketCommunicator)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from optio import consumers, events, lifecycle, logs
from optio.models import ApiToken, Event, Repo, Task
from optio.realtime import Hub, send_to_group, wire
from tests.optio import spine_support
from tests.optio.spine_support import close_code, connect, disconnect, drain, frames, run

pytestmark = pytest.mark.django_db(transaction=True)

db = sync_to_async  # lifecycle calls run off the event loop, in Django's thread, like a view would


@pytest.fixture(autouse=True)
def readiness(monkeypatch):
    spine_support.readiness = spine_support.Readiness().install(monkeypatch)
    yield spine_support.readiness
    spine_support.readiness = None


@pytest.fixture
def user():
    return get_user_model().objects.create_user("ada")


@pytest.fixture
def token(user):
    return ApiToken.objects.issue(user, name="ws")[1]


@pytest.fixture
def repo():
    return Repo.objects.create(url="https://github.com/acme/webapp")


@pytest.fixture
def task(repo):
    return lifecycle.create_task(repo, "Add email validation", "Do it")


def stream_seqs(frames_: list[dict]) -> list[int]:
    return [f["seq"] for f in frames_]


# Authentication, 4404, caps


def test_events_without_credentials_close_4401():
    async def scenario():
        for path in ("/ws/events", "/ws/events?token=", "/ws/events?token=optio_nope"):
            comm = await connect(path)
            assert await close_code(comm) == consumers.CLOSE_UNAUTHORIZED, path
            await disconnect(comm)

    run(scenario())


def test_expired_token_closes_4401(user):
    _, raw = ApiToken.objects.issue(user, expires_at=timezone.now() - timedelta(minutes=1))

    async def scenario():
        comm = await connect(f"/ws/events?token={raw}")
        assert await close_code(comm) == consumers.CLOSE_UNAUTHORIZED
        await disconnect(comm)

    run(scenario())


def test_logs_without_credentials_close_4401_before_revealing_the_task(task):
    async def scenario():
        comm = await connect(f"/ws/logs/{uuid.uuid4()}")
        assert await close_code(comm) == consumers.CLOSE_UNAUTHORIZED
        await disconnect(comm)

    run(scenario())


def test_logs_of_unknown_task_close_4404(token):
    async def scenario():
        comm = await connect(f"/ws/logs/{uuid.uuid4()}?token={token}")
        assert await close_code(comm) == consumers.CLOSE_NOT_FOUND
        await disconnect(comm)

    run(scenario())


def _session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def test_session_cookie_authenticates_same_origin_only(user, task):
    cookie = _session_cookie(user)

    async def scenario():
        comm = await connect("/ws/events", headers=[(b"cookie", cookie), (b"origin", b"http://127.0.0.1:8000")])
        assert {f["event"] for f in await frames(comm, 2)} == {"task.created", "task.queued"}
        await disconnect(comm)
        # Another site's page cannot borrow the signed-in user's cookie.
        comm = await connect("/ws/events", headers=[(b"cookie", cookie), (b"origin", b"https://evil.example")])
        assert await close_code(comm) == consumers.CLOSE_UNAUTHORIZED
        await disconnect(comm)

    run(scenario())


def test_session_of_a_user_whose_password_changed_closes_4401(user, task):
    cookie = _session_cookie(user)
    user.set_password("a new one, elsewhere")
    user.save()

    async def scenario():
        comm = await connect("/ws/events", headers=[(b"cookie", cookie)])
        assert await close_code(comm) == consumers.CLOSE_UNAUTHORIZED
        await disconnect(comm)

    run(scenario())


def test_per_user_connection_cap_closes_4429(settings, token, user, task):
    settings.OPTIO_WS_MAX_CONNECTIONS_PER_USER = 2
    other_token = ApiToken.objects.issue(get_user_model().objects.create_user("bob"))[1]

    async def connected(t):  # fully set up once its two backfill frames arrived
        comm = await connect(f"/ws/events?token={t}")
        await frames(comm, 2)
        return comm

    async def scenario():
        first = await connected(token)
        second = await connected(token)
        third = await connect(f"/ws/events?token={token}")
        assert await close_code(third) == consumers.CLOSE_TOO_MANY
        await disconnect(third)
        # The cap is per user: someone else still gets in.
        bob = await connected(other_token)
        # Closing one frees its slot.
        await first.disconnect()
        fourth = await connected(token)
        assert consumers.slots.count(user.pk) == 2
        for comm in (second, fourth, bob):
            await disconnect(comm)
        assert consumers.slots.count(user.pk) == 0

    run(scenario())


def test_oversized_inbound_frame_closes_1009(token):
    async def scenario():
        comm = await connect(f"/ws/events?token={token}")
        await comm.send_to(text_data="x" * 100)  # small frames are ignored
        assert await comm.receive_nothing(0.1)
        await comm.send_to(text_data="x" * (consumers.MAX_INBOUND_BYTES + 1))
        assert await close_code(comm) == consumers.CLOSE_TOO_BIG
        await disconnect(comm)

    run(scenario())


@pytest.mark.parametrize(
    "stream, query",
    [
        ("events", "after=-1"),
        ("events", "after=abc"),
        ("logs", "after=1.5"),
        ("logs", "tail=x"),
        ("logs", "eventsAfter=no"),
    ],
)
def test_bad_cursor_closes_4400(token, task, stream, query):
    path = f"/ws/events?token={token}&{query}" if stream == "events" else f"/ws/logs/{task.pk}?token={token}&{query}"

    async def scenario():
        comm = await connect(path)
        assert await close_code(comm) == consumers.CLOSE_BAD_REQUEST
        await disconnect(comm)

    run(scenario())


# /ws/events: backfill, resume, live, order


def _make_events(repo, tasks: int) -> list[Task]:
    made = []
    for i in range(tasks):
        made.append(lifecycle.create_task(repo, f"task {i}", "p"))  # two events each
    return made


def test_events_start_with_the_last_20_then_live(token, repo):
    _make_events(repo, 15)  # 30 events
    all_seqs = list(Event.objects.order_by("stream_seq").values_list("stream_seq", flat=True))

    async def scenario():
        comm = await connect(f"/ws/events?token={token}")
        backfill = await frames(comm, 20)
        assert await comm.receive_nothing(0.2)
        assert stream_seqs(backfill) == all_seqs[-20:]
        task = await db(lifecycle.create_task)(repo, "live one", "p")
        live = await frames(comm, 2)
        assert [f["event"] for f in live] == ["task.created", "task.queued"]
        assert live[0]["data"]["taskId"] == str(task.pk)
        assert stream_seqs(live) == [all_seqs[-1] + 1, all_seqs[-1] + 2]
        await disconnect(comm)

    run(scenario())


def test_frames_are_the_envelope_plus_seq(token, task):
    event = Event.objects.filter(task=task).order_by("stream_seq").last()

    async def scenario():
        comm = await connect(f"/ws/events?token={token}")
        last = (await frames(comm, 2))[-1]
        await disconnect(comm)
        return last

    frame = run(scenario())
    assert frame == dict(event.envelope(), seq=event.stream_seq)
    assert set(frame) == {"id", "event", "timestamp", "data", "seq"}


def test_resume_after_sends_the_rest_then_live_without_duplicates(token, repo):
    _make_events(repo, 5)
    seqs = list(Event.objects.order_by("stream_seq").values_list("stream_seq", flat=True))

    async def scenario():
        comm = await connect(f"/ws/events?token={token}&after={seqs[3]}")
        got = await frames(comm, len(seqs) - 4)
        await db(_make_events)(repo, 1)
        got += await frames(comm, 2)
        got += await drain(comm)
        await disconnect(comm)
        return got

    got = stream_seqs(run(scenario()))
    assert got == list(range(seqs[4], seqs[-1] + 3))


def test_resume_with_events_arriving_mid_backfill_has_no_gap_and_no_duplicate(token, repo, monkeypatch):
    _make_events(repo, 10)  # 20 events
    seqs = list(Event.objects.order_by("stream_seq").values_list("stream_seq", flat=True))
    monkeypatch.setattr(consumers, "PAGE", 3)
    original = consumers._events_after
    pages = []

    def page_while_events_arrive(after, limit, task_id=None):
        pages.append(after)
        if len(pages) in (1, 3):  # commit and dispatch new events between backfill pages
            _make_events(repo, 2)
        page = original(after, limit, task_id)
        if len(page) < limit:  # the last page: these come after every read, so only live
            _make_events(repo, 1)
        return page

    monkeypatch.setattr(consumers, "_events_after", page_while_events_arrive)

    async def scenario():
        comm = await connect(f"/ws/events?token={token}&after={seqs[1]}")
        got = await drain(comm, quiet=1.0)
        await disconnect(comm)
        return got

    got = stream_seqs(run(scenario()))
    expected_last = seqs[-1] + 10  # 5 tasks x 2 events arrived during the backfill
    assert got == list(range(seqs[2], expected_last + 1))
    assert len(pages) > 3


def test_cursor_ahead_of_the_stream_is_pulled_back(token, repo):
    _make_events(repo, 1)

    async def scenario():
        comm = await connect(f"/ws/events?token={token}&after=999999")
        assert await comm.receive_nothing(0.2)
        await db(_make_events)(repo, 1)
        got = await frames(comm, 2)
        await disconnect(comm)
        return got

    assert [f["event"] for f in run(scenario())] == ["task.created", "task.queued"]


def test_early_frame_waits_for_the_one_before_it(token, task):
    last = Event.objects.order_by("stream_seq").last()

    def frame(seq):
        return wire(dict(last.envelope(), seq=seq, id=f"evt_{seq}"))

    async def scenario():
        comm = await connect(f"/ws/events?token={token}&after={last.stream_seq}")
        # Two dispatchers published out of order: N+2 reaches the group before N+1.
        await db(send_to_group)("events", {"type": "event.frames", "frames": [frame(last.stream_seq + 2)]})
        await db(send_to_group)("events", {"type": "event.frames", "frames": [frame(last.stream_seq + 1)]})
        await db(send_to_group)("events", {"type": "event.frames", "frames": [frame(last.stream_seq + 1)]})
        got = await drain(comm, quiet=1.0)
        await disconnect(comm)
        return got

    assert stream_seqs(run(scenario())) == [last.stream_seq + 1, last.stream_seq + 2]


def test_frame_lost_on_the_way_is_read_from_the_database(token, repo, task):
    async def scenario():
        comm = await connect(f"/ws/events?token={token}")
        await frames(comm, 2)
        # The live frame of one event is lost (its publisher died after the claim committed)...
        events.unsubscribe("optio.websockets")
        try:
            await db(lifecycle.transition)(task, "running")
        finally:
            from optio.dispatch import to_websockets

            events.subscribe("optio.websockets", to_websockets)
        # ...the next one arrives early, and the consumer fills the gap from the database.
        await db(lifecycle.transition)(task, "completed")
        got = await frames(comm, 2, timeout=consumers.GAP_WAIT + 5)
        assert await comm.receive_nothing(0.2)
        await disconnect(comm)
        return got

    assert [f["event"] for f in run(scenario())] == ["task.running", "task.completed"]


def test_gap_fill_that_fails_is_retried(token, task, monkeypatch):
    original = consumers._events_between
    calls = []

    def flaky(lo, hi, task_id=None):
        calls.append((lo, hi))
        if len(calls) == 1:
            raise RuntimeError("database went away for a moment")
        return original(lo, hi, task_id)

    monkeypatch.setattr(consumers, "_events_between", flaky)
    last = Event.objects.order_by("stream_seq").last().stream_seq

    async def scenario():
        comm = await connect(f"/ws/events?token={token}&after={last}")
        events.unsubscribe("optio.websockets")  # the next frame is lost on its way
        try:
            await db(lifecycle.transition)(task, "running")
        finally:
            from optio.dispatch import to_websockets

            events.subscribe("optio.websockets", to_websockets)
        await db(lifecycle.transition)(task, "completed")
        got = await frames(comm, 2, timeout=consumers.GAP_WAIT * 2 + 5)
        await disconnect(comm)
        return got

    assert [f["event"] for f in run(scenario())] == ["task.running", "task.completed"]
    assert len(calls) == 2


def test_rolled_back_transition_sends_no_frame(token, task):
    def failing_request():
        from django.db import transaction

        with transaction.atomic():
            lifecycle.transition(Task.objects.get(pk=task.pk), "running")
            raise RuntimeError("rolled back")

    async def scenario():
        comm = await connect(f"/ws/events?token={token}")
        await frames(comm, 2)
        with pytest.raises(RuntimeError):
            await db(failing_request)()
        assert await comm.receive_nothing(0.5)
        await disconnect(comm)

    run(scenario())
    assert not Event.objects.filter(name="task.running").exists()


# /ws/logs/<taskId>


def _append(task, count, start=0, **line):
    return logs.append(task, [dict({"content": f"line {start + i}"}, **line) for i in range(count)])


def test_logs_start_with_the_last_1000_lines_and_events_then_live(token, task):
    _append(task, 1005)

    async def scenario():
        comm = await connect(f"/ws/logs/{task.pk}?token={token}")
        got = await frames(comm, 2 + 1000)
        envelopes, lines = got[:2], got[2:]
        assert [f["event"] for f in envelopes] == ["task.created", "task.queued"]
        assert stream_seqs(lines) == list(range(6, 1006))
        assert set(lines[0]) == {"seq", "taskId", "timestamp", "stream", "type", "content", "metadata"}
        assert lines[-1]["content"] == "line 1004" and lines[-1]["taskId"] == str(task.pk)
        assert await comm.receive_nothing(0.2)

        await db(_append)(task, 3, start=1005, type="tool_use", metadata={"tool": "bash"})
        live = await frames(comm, 3)
        assert stream_seqs(live) == [1006, 1007, 1008]
        assert live[0]["type"] == "tool_use" and live[0]["metadata"] == {"tool": "bash"}

        await db(lifecycle.transition)(task, "running")
        envelope = (await frames(comm, 1))[0]
        assert envelope["event"] == "task.running" and envelope["data"]["taskId"] == str(task.pk)
        await disconnect(comm)

    run(scenario())


def test_logs_tail_overrides_the_default(token, task):
    _append(task, 50)

    async def scenario():
        comm = await connect(f"/ws/logs/{task.pk}?token={token}&tail=5&eventsAfter=999999")
        got = await drain(comm)
        await disconnect(comm)
        comm = await connect(f"/ws/logs/{task.pk}?token={token}&tail=0&eventsAfter=999999")
        await db(_append)(task, 1, start=50)
        assert stream_seqs(await frames(comm, 1)) == [51]
        assert await comm.receive_nothing(0.2)
        await disconnect(comm)
        return got

    assert stream_seqs(run(scenario())) == [46, 47, 48, 49, 50]


def test_logs_resume_after_with_lines_arriving_mid_backfill(token, task, monkeypatch):
    _append(task, 20)
    monkeypatch.setattr(consumers, "PAGE", 4)
    original = consumers._logs_after
    calls = []

    def page_while_lines_arrive(task_id, after, limit):
        calls.append(after)
        if len(calls) in (1, 2):
            _append(task, 3, start=100 + len(calls) * 10)
        page = original(task_id, after, limit)
        if len(page) < limit:  # after the last read: only the live path can deliver these
            _append(task, 2, start=200)
        return page

    monkeypatch.setattr(consumers, "_logs_after", page_while_lines_arrive)

    async def scenario():
        comm = await connect(f"/ws/logs/{task.pk}?token={token}&after=10&eventsAfter=999999")
        got = await drain(comm, quiet=1.0)
        await disconnect(comm)
        return got

    assert stream_seqs(run(scenario())) == list(range(11, 29))


def test_logs_event_envelopes_resume_by_events_after(token, task):
    lifecycle.transition(task, "running")
    queued = Event.objects.get(task=task, name="task.queued")

    async def scenario():
        comm = await connect(f"/ws/logs/{task.pk}?token={token}&eventsAfter={queued.stream_seq}&tail=0")
        got = await frames(comm, 1)
        assert await comm.receive_nothing(0.2)
        await disconnect(comm)
        return got

    assert [f["event"] for f in run(scenario())] == ["task.running"]


def test_logs_stream_carries_only_its_own_task(token, repo, task):
    other = lifecycle.create_task(repo, "other", "p")
    latest = Event.objects.order_by("stream_seq").last().stream_seq

    async def scenario():
        comm = await connect(f"/ws/logs/{task.pk}?token={token}&after=0&eventsAfter={latest}")
        await db(_append)(other, 2)
        await db(lifecycle.transition)(other, "running")
        await db(_append)(task, 1)
        got = await frames(comm, 1)
        assert await comm.receive_nothing(0.3)
        await disconnect(comm)
        return got

    got = run(scenario())
    assert got[0]["taskId"] == str(task.pk) and got[0]["seq"] == 1


# The process Hub


def test_one_group_subscription_serves_every_consumer_of_the_process(settings, token, task):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "optio.channel_layer.ThreadSafeInMemoryChannelLayer"}}

    async def scenario():
        comms = [await connect(f"/ws/events?token={token}") for _ in range(3)]
        for comm in comms:
            await frames(comm, 2)
        layer = get_channel_layer()
        hub = Hub.current()
        assert len(hub.members["events"]) == 3
        assert layer._groups["events"] == {hub.channel}  # one subscription, not three
        await db(lifecycle.transition)(task, "running")
        for comm in comms:
            assert (await frames(comm, 1))[0]["event"] == "task.running"
        for comm in comms:
            await disconnect(comm)
        assert "events" not in hub.members and "events" not in layer._groups

    run(scenario())


def test_client_too_far_behind_is_closed_1013_and_resumes_with_after(token, task, monkeypatch):
    monkeypatch.setattr(consumers, "MAX_BACKLOG", 3)
    last = Event.objects.order_by("stream_seq").last()

    async def scenario():
        comm = await connect(f"/ws/events?token={token}")
        await frames(comm, 2)
        member = next(iter(Hub.current().members["events"]))
        for n in range(1, 6):  # offered faster than the client reads
            member.offer({"type": "event.frames", "frames": [wire(dict(last.envelope(), seq=last.stream_seq + n))]})
        assert await close_code(comm) == consumers.CLOSE_TRY_AGAIN
        await disconnect(comm)
        # The client reconnects where it was and loses nothing that was committed.
        await db(lifecycle.transition)(task, "running")
        comm = await connect(f"/ws/events?token={token}&after={last.stream_seq}")
        got = await frames(comm, 1)
        await disconnect(comm)
        return got

    assert [f["event"] for f in run(scenario())] == ["task.running"]
