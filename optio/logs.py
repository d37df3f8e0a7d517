"""Task logs: parse agent output, append with increasing per-task seq, stream after commit."""

from __future__ import annotations

import json
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from optio.models import Task, TaskLog

MAX_LINES_PER_REQUEST = 5000
MAX_CONTENT = 64 * 1024
STREAMS = {"stdout", "stderr", "system", "agent"}


class InvalidLogLine(ValueError):
    def __init__(self, index: int, message: str):
        self.index = index
        super().__init__(f"Log line {index + 1}: {message}")


def parse_body(body: bytes, content_type: str) -> list[dict]:
    """A JSON array, NDJSON (one object or string per line) or plain text (one entry per line)."""
    text = body.decode("utf-8", errors="replace")
    if content_type.startswith("application/json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidLogLine(0, f"the body is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
        if isinstance(data, dict):
            data = data.get("lines", [data]) if "lines" in data else [data]
        if not isinstance(data, list):
            raise InvalidLogLine(0, "send a JSON array of log lines.")
        return [_normalise(i, item) for i, item in enumerate(data)]
    lines = [line for line in text.splitlines() if line.strip()]
    if content_type.startswith(("application/x-ndjson", "application/jsonl", "application/json-seq")):
        out = []
        for i, line in enumerate(lines):
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                item = line  # an agent may interleave plain text; keep it as text
            out.append(_normalise(i, item))
        return out
    return [_normalise(i, line) for i, line in enumerate(lines)]


def _normalise(index: int, item) -> dict:
    if isinstance(item, str):
        return {"content": item[:MAX_CONTENT], "type": "text", "stream": "stdout", "metadata": {}}
    if not isinstance(item, dict):
        raise InvalidLogLine(index, "each line must be a string or an object with type, content and metadata.")
    content = item.get("content", item.get("text", ""))
    if not isinstance(content, str):
        content = json.dumps(content)
    metadata = item.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidLogLine(index, "metadata must be an object.")
    line_type = item.get("type", "text")
    stream = item.get("stream", "stdout")
    if not isinstance(line_type, str) or not isinstance(stream, str):
        raise InvalidLogLine(index, "type and stream must be strings.")
    out = {"content": content[:MAX_CONTENT], "type": line_type[:32], "stream": stream[:16], "metadata": metadata}
    ts = item.get("timestamp")
    if ts is not None:
        parsed = parse_datetime(ts) if isinstance(ts, str) else None
        if parsed is None:
            raise InvalidLogLine(index, "timestamp must be an ISO 8601 date-time.")
        out["timestamp"] = parsed if parsed.tzinfo else timezone.make_aware(parsed, timezone.utc)
    return out


@transaction.atomic
def append(task: Task, lines: list[dict]) -> list[TaskLog]:
    """Append lines; sequence numbers are reserved in one UPDATE so concurrent writers never collide."""
    if not lines:
        return []
    Task.objects.filter(pk=task.pk).update(log_seq=F("log_seq") + len(lines))
    last = Task.objects.filter(pk=task.pk).values_list("log_seq", flat=True).get()
    first = last - len(lines) + 1
    now = timezone.now()
    rows = [
        TaskLog(
            task_id=task.pk,
            seq=first + i,
            timestamp=line.get("timestamp") or now,
            stream=line.get("stream", "stdout"),
            type=line.get("type", "text"),
            content=line.get("content", ""),
            metadata=line.get("metadata") or {},
        )
        for i, line in enumerate(lines)
    ]
    if connection.vendor == "postgresql" and len(rows) >= COPY_THRESHOLD:
        _copy(rows)
    else:
        TaskLog.objects.bulk_create(rows)
    transaction.on_commit(lambda: _stream(task.pk, rows))
    return rows


# Agent runners post hundreds of lines at a time; COPY writes them several times faster than
# a multi-row INSERT, whose SQL Django builds row by row. (Rows written this way have no pk.)
COPY_THRESHOLD = 100
_COPY_FIELDS = ("task", "seq", "timestamp", "stream", "type", "content", "metadata")


def _copy(rows: list[TaskLog]) -> None:
    columns = ", ".join(connection.ops.quote_name(TaskLog._meta.get_field(f).column) for f in _COPY_FIELDS)
    table = connection.ops.quote_name(TaskLog._meta.db_table)
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:  # noqa: S608
        for r in rows:
            copy.write_row((r.task_id, r.seq, r.timestamp, r.stream, r.type, r.content, json.dumps(r.metadata)))


def log(task: Task, content: str, *, type: str = "system", stream: str = "system", **metadata) -> TaskLog:
    """The lifecycle's own helper for one line of Optio's commentary on a task."""
    return append(task, [{"content": content, "type": type, "stream": stream, "metadata": metadata}])[0]


def frame(row: TaskLog) -> dict:
    ts: datetime = row.timestamp
    return {
        "seq": row.seq,
        "taskId": str(row.task_id),
        "timestamp": ts.isoformat().replace("+00:00", "Z"),
        "stream": row.stream,
        "type": row.type,
        "content": row.content,
        "metadata": row.metadata,
    }


# Big batches are split so no single channel-layer message grows huge.
FRAMES_PER_MESSAGE = 500
BYTES_PER_MESSAGE = 512 * 1024


def _stream(task_id, rows: list[TaskLog]) -> None:
    """Live frames for /ws/logs/<id>, after commit. Best effort: a follower that misses one
    (process died, Redis blipped) reads the gap from the database (optio/consumers.py)."""
    from optio.realtime import send_to_group, wire

    group = f"task-{task_id}"
    chunk, size = [], 0
    for row in rows:
        chunk.append(wire(frame(row)))
        size += len(row.content) + 200
        if len(chunk) >= FRAMES_PER_MESSAGE or size >= BYTES_PER_MESSAGE:
            send_to_group(group, {"type": "log.frames", "frames": chunk})
            chunk, size = [], 0
    if chunk:
        send_to_group(group, {"type": "log.frames", "frames": chunk})
