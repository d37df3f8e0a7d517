"""Log ingestion: POST /api/tasks/<id>/logs and the lifecycle helper, streamed after commit."""

from __future__ import annotations

import json
import threading

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

from optio import lifecycle, logs
from optio.models import ApiToken, TaskLog
from tests.optio import spine_support
from tests.optio.spine_support import connect, disconnect, frames, run


@pytest.fixture
def task(repo):
    return lifecycle.create_task(repo, "Add email validation", "Do it")


def post_logs(api, task, body: str, content_type: str):
    return api.client.post(
        f"/api/tasks/{task.pk}/logs", data=body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {api.token}"
    )


def stored(task) -> list[tuple]:
    return list(TaskLog.objects.filter(task=task).order_by("seq").values_list("seq", "type", "stream", "content"))


def test_json_array_of_structured_lines_is_appended_in_order(api, task):
    lines = [
        {"type": "thinking", "content": "Reading the form", "metadata": {"turn": 1}},
        {"type": "tool_use", "content": "ls", "stream": "agent", "metadata": {"tool": "bash"}},
        "plain text is fine too",
    ]
    resp = api.post(f"/api/tasks/{task.pk}/logs", lines)
    assert resp.status_code == 201, resp.content
    assert resp.json() == {"appended": 3, "lastSeq": 3}
    assert stored(task) == [
        (1, "thinking", "stdout", "Reading the form"),
        (2, "tool_use", "agent", "ls"),
        (3, "text", "stdout", "plain text is fine too"),
    ]
    assert TaskLog.objects.get(task=task, seq=2).metadata == {"tool": "bash"}


def test_ndjson_agent_output_with_interleaved_plain_lines(api, task):
    body = "\n".join(
        [
            json.dumps({"type": "assistant", "content": "I'll add a validator"}),
            "npm WARN deprecated something",
            json.dumps({"type": "result", "content": "done", "metadata": {"costUsd": "0.12"}}),
            "",
        ]
    )
    resp = post_logs(api, task, body, "application/x-ndjson")
    assert resp.status_code == 201, resp.content
    assert [row[1:] for row in stored(task)] == [
        ("assistant", "stdout", "I'll add a validator"),
        ("text", "stdout", "npm WARN deprecated something"),
        ("result", "stdout", "done"),
    ]


def test_plain_text_is_one_line_each_and_seq_keeps_growing(api, task):
    assert post_logs(api, task, "one\ntwo\n", "text/plain").json() == {"appended": 2, "lastSeq": 2}
    assert post_logs(api, task, "three", "text/plain").json() == {"appended": 1, "lastSeq": 3}
    assert [row[0] for row in stored(task)] == [1, 2, 3]


def test_lifecycle_log_helper_appends_a_system_line(task):
    row = logs.log(task, "Queued for the agent runner", runner="local")
    assert (row.seq, row.type, row.stream, row.metadata) == (1, "system", "system", {"runner": "local"})


@pytest.mark.parametrize(
    "body, content_type, message",
    [
        ("[{", "application/json", "not valid JSON"),
        ('{"lines": 5}', "application/json", "JSON array"),
        ("[42]", "application/json", "string or an object"),
        ('[{"content": "x", "metadata": [1]}]', "application/json", "metadata must be an object"),
        ('[{"content": "x", "timestamp": "yesterday"}]', "application/json", "ISO 8601"),
    ],
)
def test_bad_lines_are_a_400_naming_the_line(api, task, body, content_type, message):
    resp = post_logs(api, task, body, content_type)
    assert resp.status_code == 400, resp.content
    assert message in resp.json()["error"]
    assert stored(task) == []


def test_too_many_lines_is_a_413(api, task):
    resp = api.post(f"/api/tasks/{task.pk}/logs", ["x"] * (logs.MAX_LINES_PER_REQUEST + 1))
    assert resp.status_code == 413
    assert "split the batch" in resp.json()["error"]


def test_logs_of_unknown_task_is_a_404(api, db):
    resp = api.post("/api/tasks/00000000-0000-0000-0000-000000000000/logs", ["x"])
    assert resp.status_code == 404


def test_big_batches_are_split_into_several_channel_messages(task, monkeypatch):
    sent = []
    monkeypatch.setattr("optio.realtime.send_to_group", lambda group, message, **kw: sent.append((group, message)))
    rows = logs.append(task, [{"content": "x" * 2000} for _ in range(700)])
    logs._stream(task.pk, rows)
    sizes = [sum(len(text) for _, text in m["frames"]) for _, m in sent]
    assert len(sent) == 3 and max(sizes) <= logs.BYTES_PER_MESSAGE + 2 * 2200
    assert {g for g, _ in sent} == {f"task-{task.pk}"}
    assert [seq for _, m in sent for seq, _ in m["frames"]] == list(range(1, 701))
    assert json.loads(sent[0][1]["frames"][0][1])["content"] == "x" * 2000


@pytest.mark.django_db(transaction=True)
def test_posted_lines_reach_followers_after_commit_and_rolled_back_ones_never(api, repo, monkeypatch):
    spine_support.readiness = spine_support.Readiness().install(monkeypatch)
    task = lifecycle.create_task(repo, "t", "p")
    token = ApiToken.objects.issue(api.user)[1]

    def post(body):
        return post_logs(api, task, body, "text/plain")

    def append_then_fail():
        with transaction.atomic():
            logs.append(task, [{"content": "never happened"}])
            raise RuntimeError("rolled back")

    async def scenario():
        comm = await connect(f"/ws/logs/{task.pk}?token={token}&after=0&eventsAfter=999999")
        with pytest.raises(RuntimeError):
            await sync_to_async(append_then_fail)()
        resp = await sync_to_async(post)("first\nsecond")
        assert resp.status_code == 201
        got = await frames(comm, 2)
        assert await comm.receive_nothing(0.3)
        await disconnect(comm)
        return got

    try:
        got = run(scenario())
    finally:
        spine_support.readiness = None
    assert [(f["seq"], f["content"]) for f in got] == [(1, "first"), (2, "second")]


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_share_a_seq(repo):
    from tests.services import require_postgres

    require_postgres()
    task = lifecycle.create_task(repo, "t", "p")

    def writer(n):
        from django.db import connection

        try:
            for _ in range(10):
                logs.append(task, [{"content": f"w{n}"}] * 5)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [row[0] for row in stored(task)] == list(range(1, 201))


def test_large_batches_keep_every_character_and_field(task):
    # On PostgreSQL batches of COPY_THRESHOLD lines or more are written with COPY.
    tricky = "tab\there, newline\nthere, back\\slash, quote \" and 'single', null \\N, unicode ✓ 🚀"
    lines = [
        {
            "content": f"{i}: {tricky}",
            "type": "tool_result",
            "stream": "stderr",
            "metadata": {"i": i, "nested": {"ok": True}},
        }
        for i in range(logs.COPY_THRESHOLD + 5)
    ]
    rows = logs.append(task, lines)
    stored_rows = list(TaskLog.objects.filter(task=task).order_by("seq"))
    assert [r.seq for r in stored_rows] == [r.seq for r in rows] == list(range(1, len(lines) + 1))
    for line, row in zip(lines, stored_rows, strict=True):
        assert (row.content, row.type, row.stream, row.metadata) == (
            line["content"],
            "tool_result",
            "stderr",
            line["metadata"],
        )
        assert row.timestamp == rows[0].timestamp
