"""Slack incoming webhooks: one remote call, and what its answers mean.

Docs: https://api.slack.com/messaging/webhooks (posting, and "Handling errors" for the
plain-text error bodies) and https://api.slack.com/apis/rate-limits (429 + Retry-After).
Every request goes through `integrations.http` (SSRF guard, timeouts, no redirects).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from integrations import http
from optio.api.serializers import mask_url

# Slack's documented error strings in words a person can act on.
_REPLACE = "create a new incoming webhook in Slack and paste its URL here"
ERROR_WORDS: dict[str, str] = {
    "invalid_token": f"Slack says the webhook's token is invalid (invalid_token): the webhook was removed or the URL is mistyped; {_REPLACE}.",
    "no_service": f"Slack does not know this webhook (no_service): it was disabled or deleted; {_REPLACE}.",
    "no_active_hooks": f"This webhook is no longer active in Slack (no_active_hooks); {_REPLACE}.",
    "no_team": f"Slack does not know the workspace in this URL (no_team); check the URL or {_REPLACE}.",
    "team_disabled": "The Slack workspace of this webhook is disabled (team_disabled).",
    "channel_not_found": f"The webhook's channel no longer exists (channel_not_found); {_REPLACE} for an existing channel.",
    "channel_is_archived": "The webhook's channel is archived (channel_is_archived); unarchive it or create a webhook for another channel.",
    "action_prohibited": "The Slack workspace's admins do not allow this webhook to post here (action_prohibited).",
    "posting_to_general_channel_denied": "Only admins may post to this workspace's general channel (posting_to_general_channel_denied); pick another channel for the webhook.",
    "user_not_found": f"Slack could not find the user this webhook posts to (user_not_found); {_REPLACE}.",
    "invalid_payload": "Slack could not read the message Optio sent (invalid_payload).",
    "invalid_blocks": "Slack rejected the message layout (invalid_blocks).",
    "invalid_blocks_format": "Slack rejected the message layout (invalid_blocks_format).",
    "no_text": "Slack rejected a message without text (no_text).",
    "missing_text_or_fallback_or_attachments": "Slack rejected a message without text (missing_text_or_fallback_or_attachments).",
    "too_many_attachments": "Slack rejected a message with too many attachments (too_many_attachments).",
    "rollup_error": "Slack had an internal error (rollup_error).",
}

MAX_RETRY_AFTER = 15 * 60  # seconds; a larger Retry-After is clamped rather than parking a message for hours


@dataclass(frozen=True)
class PostResult:
    ok: bool
    status: int | None  # None when no HTTP response came back
    code: str  # "ok", Slack's error string ("invalid_token"), "http_<status>", or a transport kind ("timeout")
    retryable: bool
    message: str  # a sentence for people: shown on the settings page and by the test endpoint
    retry_after: float | None = None


def post_message(webhook_url: str, payload: dict, *, timeout: float = http.TOTAL_TIMEOUT) -> PostResult:
    """POST one message to an incoming webhook (https://api.slack.com/messaging/webhooks)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    try:
        resp = http.request(
            "POST",
            webhook_url,
            headers={"Content-Type": "application/json; charset=utf-8"},
            body=body,
            timeout=timeout,
            max_response=16 * 1024,
        )
    except (http.InvalidUrl, http.BlockedDestination, http.PayloadTooLarge) as exc:
        return PostResult(False, None, exc.kind, False, redact(exc.reason, webhook_url))
    except http.OutboundError as exc:  # timeout, refused, TLS: worth another try
        return PostResult(False, None, exc.kind, True, redact(exc.reason, webhook_url))
    return interpret(resp.status, resp.text(), resp.header("retry-after"))


def interpret(status: int, text: str, retry_after: str | None = None) -> PostResult:
    """Classify Slack's answer: success, retry later (429, 5xx), or a permanent error."""
    code = text.strip()
    if 200 <= status < 300:
        return PostResult(True, status, "ok", False, "Slack accepted the message.")
    if not re.fullmatch(r"[a-z_]{1,64}", code):
        code = f"http_{status}"  # not one of Slack's error strings: an HTML error page, a proxy, ...
    if status == 429:
        wait = parse_retry_after(retry_after)
        return PostResult(
            False, status, "rate_limited", True,
            f"Slack is rate limiting this webhook (HTTP 429); it asked Optio to wait {wait:g} s.", wait,
        )  # fmt: skip
    if status >= 500:
        words = ERROR_WORDS.get(code, f"Slack had a server error (HTTP {status}).")
        return PostResult(False, status, code, True, words, parse_retry_after(retry_after) if retry_after else None)
    if 300 <= status < 400:
        return PostResult(
            False, status, code, False,
            f"The URL answered with a redirect (HTTP {status}) instead of accepting the message; "
            "paste the incoming-webhook URL exactly as Slack shows it.",
        )  # fmt: skip
    words = ERROR_WORDS.get(code) or f"Slack refused the message with HTTP {status}" + (
        f" ({code})." if not code.startswith("http_") else "."
    )
    return PostResult(False, status, code, False, words)


def parse_retry_after(value: str | None, default: float = 1.0) -> float:
    """Seconds from a Retry-After header (delta-seconds; Slack does not send HTTP dates)."""
    try:
        seconds = float((value or "").strip())
    except ValueError:
        return default
    if seconds != seconds or seconds < 0:  # NaN or negative
        return default
    return min(seconds, MAX_RETRY_AFTER)


def redact(text: str, url: str) -> str:
    """A reason from the HTTP layer with the webhook URL (its path holds the token) masked."""
    if not url:
        return text
    return text.replace(repr(url), repr(mask_url(url))).replace(url, mask_url(url))
