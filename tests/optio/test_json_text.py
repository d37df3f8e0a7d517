"""events.json_text: the compact JSON of webhook bodies and WebSocket frames."""

from __future__ import annotations

import json

import pytest

from optio.events import json_text


def _reference(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize(
    "value",
    [
        {"id": "evt_1", "event": "task.completed", "timestamp": "2026-11-30T12:00:00.123456Z", "data": {}},
        {"data": {"title": "Añadir validación ✓ 日本語 😀", "n": 3, "ok": True, "none": None, "list": [1, "a"]}},
        {"text": 'quote " backslash \\ newline \n tab \t nul \x00 bell \x07 slash / sep \u2028'},
        {"nested": {"b": 2, "a": 1}, "order": "kept as given"},
        {"float": 0.1, "int": -(2**63), "big": 2**64 - 1},
    ],
)
def test_the_text_is_what_json_dumps_writes(value):
    assert json_text(value) == _reference(value)


def test_what_orjson_refuses_still_serialises():
    value = {"huge": 2**80}  # beyond 64 bits: orjson raises, json does not
    assert json_text(value) == '{"huge":1208925819614629174706176}'
    assert json.loads(json_text(value)) == value
