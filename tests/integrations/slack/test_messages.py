"""Message building: Slack's block limits and mrkdwn escaping hold for any task data."""

from __future__ import annotations

import json
import uuid

import pytest

from integrations.slack import messages
from tests.fakes.slack import SECTION_FIELD_TEXT_MAX, SECTION_TEXT_MAX, check_payload

TASK_ID = str(uuid.uuid4())


def data(**extra) -> dict:
    base = {"taskId": TASK_ID, "title": "Add email validation", "repoUrl": "https://github.com/acme/webapp",
            "state": "completed", "fromState": "pr_opened", "prUrl": None, "costUsd": None}  # fmt: skip
    return base | extra


@pytest.mark.parametrize("state", ["completed", "failed", "needs_attention", "pr_opened"])
def test_huge_values_still_make_a_valid_message(state):
    message = messages.task_message(
        state,
        data(
            title="T<&>" * 125,  # 500 characters, the longest title a task can have
            error=("```" + "<boom> & " * 3000),
            reason="r" * 64,
            prUrl="https://github.com/acme/webapp/pull/" + "9" * 400,
            costUsd="123456789.1234",
            ticketSource="linear",
            ticketExternalId="ENG-" + "1" * 120,
            ticketUrl="https://linear.app/acme/issue/ENG-1",
        ),
    )
    assert check_payload("application/json", json.dumps(message).encode())[0] == "ok"
    for block in message["blocks"]:
        if "text" in block:
            assert len(block["text"]["text"]) <= SECTION_TEXT_MAX
        for field in block.get("fields", []):
            assert len(field["text"]) <= SECTION_FIELD_TEXT_MAX
    assert len(message["text"]) <= messages.FALLBACK_MAX


def test_title_and_error_are_escaped_so_they_cannot_inject_links_or_mentions():
    message = messages.task_message(
        "failed", data(title="<!channel> <https://evil.example|click> & co", error="<@U123> broke ```it```")
    )
    text = json.dumps(message)
    assert "<!channel>" not in text and "<https://evil.example" not in text and "<@U123>" not in text
    assert "&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; co" in message["blocks"][0]["text"]["text"]
    assert "```&lt;@U123&gt; broke '''it'''```" in message["blocks"][2]["text"]["text"]


def test_a_url_that_cannot_be_linked_safely_is_shown_as_text():
    message = messages.task_message("pr_opened", data(prUrl="https://github.com/acme/webapp/pull/7|<evil>"))
    fields = " ".join(f["text"] for f in message["blocks"][1]["fields"])
    assert "<https://github.com/acme/webapp/pull/7|" not in fields


def test_truncation_never_leaves_half_an_escape():
    assert messages.truncate("ab&amp;cd", 5) == "ab…"
    assert messages.truncate("short", 10) == "short"


def test_title_links_to_the_task_page_at_the_public_url(settings):
    settings.OPTIO_PUBLIC_URL = "https://optio.example.com"
    message = messages.task_message("completed", data())
    assert f"<https://optio.example.com/tasks/{TASK_ID}/|Add email validation>" in message["blocks"][0]["text"]["text"]
    assert f"https://optio.example.com/tasks/{TASK_ID}/" in message["text"]


def test_unknown_attention_reason_is_put_in_words():
    message = messages.task_message("needs_attention", data(reason="stale_branch"))
    assert "Stale branch." in message["blocks"][0]["text"]["text"]
