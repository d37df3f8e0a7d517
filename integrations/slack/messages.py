"""Slack messages for task events, built with slack-sdk's Block Kit models.

Limits (https://api.slack.com/reference/block-kit/blocks): section text 3000 characters,
at most 10 section fields of 2000 each, context text 3000, 50 blocks. Long values are
cut here so Slack never answers `invalid_blocks`; `.to_dict()` runs slack-sdk's own
validators as a second check. The top-level `text` is the plain-text fallback Slack
uses for notifications and screen readers (https://api.slack.com/methods/chat.postMessage#text_usage).
"""

from __future__ import annotations

import re

from django.conf import settings
from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject, SectionBlock

from optio.models import Repo

TITLE_MAX = 250
ERROR_EXCERPT_MAX = 1500
FIELD_MAX = 2000
SECTION_MAX = 3000
FALLBACK_MAX = 3000

STATES = {
    # state: (emoji, what happened, in words)
    "completed": (":white_check_mark:", "Completed", "The pull request was merged."),
    "failed": (":x:", "Failed", ""),
    "needs_attention": (":warning:", "Needs attention", ""),
    "pr_opened": (":arrow_heading_up:", "Pull request opened", "Review it when you can."),
}

REASONS = {
    "ci_failed": "CI failed on the pull request.",
    "changes_requested": "A reviewer requested changes on the pull request.",
    "merge_conflict": "The pull request has merge conflicts.",
}


def escape(text: str) -> str:
    """Slack's three control characters (https://api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    cut = re.sub(r"&[a-z]{0,4}$", "", cut)  # never leave half an escape such as "&am"
    return cut + "…"


def link(url: str | None, label: str) -> str:
    """`<url|label>` in mrkdwn; just the (escaped) label when the URL cannot be linked safely."""
    label = escape(label)
    if not url or not re.match(r"https?://", url) or re.search(r"[\s<>|]", url):
        return label
    return f"<{url}|{label}>"


def task_page_url(task_id: str) -> str:
    return f"{settings.OPTIO_PUBLIC_URL}/tasks/{task_id}/"


def repo_name(repo_url: str) -> str:
    return "/".join(repo_url.rstrip("/").split("/")[3:5]) or repo_url


def code_block(text: str, limit: int = ERROR_EXCERPT_MAX) -> str:
    """An excerpt of `text` as a mrkdwn code block (a ``` inside would end the block early)."""
    return "```" + truncate(escape(text.replace("```", "'''")), limit) + "```"


def reason_words(reason: str) -> str:
    return REASONS.get(reason) or (reason.replace("_", " ").capitalize() + "." if reason else "No reason was recorded.")


def _pr_label(pr_url: str) -> str:
    match = re.search(r"/pull/(\d+)", pr_url)
    return f"#{match.group(1)}" if match else pr_url


def task_message(state: str, data: dict) -> dict:
    """The Slack payload for task event `data` (the envelope's data) in `state`."""
    emoji, label, sentence = STATES[state]
    title = data.get("title") or "Untitled task"
    page = task_page_url(data["taskId"])
    repo_url = data.get("repoUrl") or ""
    pr_url = data.get("prUrl") or ""
    cost = data.get("costUsd")
    error = (data.get("error") or "").strip()
    reason = data.get("reason") or ""

    headline = f"{emoji} *{link(page, truncate(title, TITLE_MAX))}*\n*{label}*"
    if state == "needs_attention":
        sentence = escape(reason_words(reason))
    if state == "pr_opened" and pr_url:
        sentence = f"Opened {link(pr_url, _pr_label(pr_url))}. {sentence}"
    if sentence:
        headline += f" — {sentence}"

    fields = [
        f"*Repository*\n{link(repo_url, repo_name(repo_url))}",
        f"*State*\n`{state}`" + (f" (from `{data['fromState']}`)" if data.get("fromState") else ""),
    ]
    if cost is not None:
        fields.append(f"*Cost*\n${escape(str(cost))}")
    if pr_url:
        fields.append(f"*Pull request*\n{link(pr_url, _pr_label(pr_url))}")
    if data.get("ticketSource") and data.get("ticketExternalId"):
        ticket = f"{data['ticketSource']} {data['ticketExternalId']}"
        fields.append(f"*Ticket*\n{link(data.get('ticketUrl'), ticket)}")

    blocks = [
        SectionBlock(text=MarkdownTextObject(text=truncate(headline, SECTION_MAX))),
        SectionBlock(fields=[MarkdownTextObject(text=truncate(f, FIELD_MAX)) for f in fields]),
    ]
    if state == "failed":
        body = f"*Error*\n{code_block(error)}" if error else "*Error*\nNo error message was recorded."
        blocks.append(SectionBlock(text=MarkdownTextObject(text=body)))
    if state == "needs_attention":
        body = f"*Reason*\n{escape(reason_words(reason))}" + (f" (`{escape(truncate(reason, 64))}`)" if reason else "")
        if error:
            body += f"\n{code_block(error)}"
        blocks.append(SectionBlock(text=MarkdownTextObject(text=body)))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"Optio · {link(page, 'open the task')}")]))

    fallback = f"{label}: {title} ({repo_name(repo_url)})"
    if state == "needs_attention":
        fallback += f" — {reason_words(reason)}"
    elif state == "failed" and error:
        fallback += f" — {error.splitlines()[0]}"
    fallback += f" {page}"
    return {"text": truncate(escape(fallback), FALLBACK_MAX), "blocks": [b.to_dict() for b in blocks]}


def sample_message(repo: Repo | None) -> dict:
    """The sample message "Send test" posts."""
    where = f" for {link(repo.url, repo.full_name)}" if repo else ""
    events = ", ".join(f"`{e}`" for e in (repo.slack_notify_on if repo else STATES)) or "no events yet"
    text = f":wave: This is a test message from Optio{where}. This channel will be told when tasks reach: {events}."
    blocks = [
        SectionBlock(text=MarkdownTextObject(text=truncate(text, SECTION_MAX))),
        ContextBlock(elements=[MarkdownTextObject(text=f"Optio · {link(settings.OPTIO_PUBLIC_URL, 'open Optio')}")]),
    ]
    fallback = "Test message from Optio" + (f" for {repo.full_name}" if repo else "")
    return {"text": escape(fallback), "blocks": [b.to_dict() for b in blocks]}
