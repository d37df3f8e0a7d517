"""A real local HTTP server standing in for Slack's incoming webhooks.

It behaves the way https://api.slack.com/messaging/webhooks#handling_errors documents:
`200 ok` for an accepted message, otherwise a plain-text error string with its status code
(`403 invalid_token`, `404 no_service`, `404 channel_not_found`, `410 channel_is_archived`,
`400 invalid_payload`, `400 invalid_blocks`, `429` with `Retry-After`, `500 rollup_error`).
Payloads are checked as Slack checks them: JSON, `text` or `blocks` (or attachments)
present, and the Block Kit limits (https://api.slack.com/reference/block-kit/blocks).

    with FakeSlack() as slack:
        url = slack.webhook_url()            # a live hook: /services/T…/B…/<token>
        slack.set_hook(url, "invalid_token")  # from now on this hook is revoked
        slack.queue(url, "rate_limited", retry_after=3)  # the next post only
        slack.messages(url)                   # payloads Slack accepted
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# Slack's documented incoming-webhook errors and the status each comes with.
ERRORS: dict[str, int] = {
    "invalid_payload": 400,
    "user_not_found": 400,
    "no_text": 400,
    "missing_text_or_fallback_or_attachments": 400,
    "invalid_blocks": 400,
    "invalid_blocks_format": 400,
    "too_many_attachments": 400,
    "invalid_token": 403,
    "action_prohibited": 403,
    "posting_to_general_channel_denied": 403,
    "team_disabled": 403,
    "no_service": 404,
    "no_team": 404,
    "channel_not_found": 404,
    "channel_is_archived": 410,
    "rate_limited": 429,
    "rollup_error": 500,
    "service_unavailable": 503,
}

MAX_BLOCKS = 50
SECTION_TEXT_MAX = 3000
SECTION_FIELDS_MAX = 10
SECTION_FIELD_TEXT_MAX = 2000
HEADER_TEXT_MAX = 150
CONTEXT_ELEMENTS_MAX = 10
BLOCK_ID_MAX = 255
BLOCK_TYPES = {"section", "header", "context", "divider", "actions", "image", "rich_text", "input", "file", "video"}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    answer: str
    payload: dict | None = None


@dataclass
class _Hook:
    state: str = "ok"  # "ok" or one of ERRORS: how every post is answered
    queued: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # one-shot answers first


class BlocksInvalid(ValueError):
    pass


def _check_text(obj, where: str, limit: int, types=("plain_text", "mrkdwn")) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in types:
        raise BlocksInvalid(f"{where} must be a text object of type {'/'.join(types)}")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        raise BlocksInvalid(f"{where}.text must be a non-empty string")
    if len(text) > limit:
        raise BlocksInvalid(f"{where}.text is {len(text)} characters; the limit is {limit}")


def validate_blocks(blocks) -> None:
    """Raise BlocksInvalid where Slack would answer `invalid_blocks`."""
    if len(blocks) > MAX_BLOCKS:
        raise BlocksInvalid(f"{len(blocks)} blocks; the limit is {MAX_BLOCKS}")
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            raise BlocksInvalid(f"{where} has no known type")
        if len(str(block.get("block_id", ""))) > BLOCK_ID_MAX:
            raise BlocksInvalid(f"{where}.block_id is too long")
        kind = block["type"]
        if kind == "section":
            if "text" not in block and "fields" not in block:
                raise BlocksInvalid(f"{where} needs text or fields")
            if "text" in block:
                _check_text(block["text"], f"{where}.text", SECTION_TEXT_MAX)
            fields = block.get("fields", [])
            if not isinstance(fields, list) or len(fields) > SECTION_FIELDS_MAX:
                raise BlocksInvalid(f"{where}.fields must be a list of at most {SECTION_FIELDS_MAX}")
            for j, f in enumerate(fields):
                _check_text(f, f"{where}.fields[{j}]", SECTION_FIELD_TEXT_MAX)
        elif kind == "header":
            _check_text(block.get("text"), f"{where}.text", HEADER_TEXT_MAX, types=("plain_text",))
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= CONTEXT_ELEMENTS_MAX:
                raise BlocksInvalid(f"{where}.elements must hold 1 to {CONTEXT_ELEMENTS_MAX} items")
            for j, e in enumerate(elements):
                if isinstance(e, dict) and e.get("type") == "image":
                    continue
                _check_text(e, f"{where}.elements[{j}]", SECTION_TEXT_MAX)


def check_payload(content_type: str, body: bytes) -> tuple[str, dict | None]:
    """Return (Slack's answer, the parsed payload) for a post body."""
    try:
        if content_type.startswith("application/x-www-form-urlencoded"):
            payload = json.loads(parse_qs(body.decode())["payload"][0])
        else:
            payload = json.loads(body)
    except (ValueError, KeyError, UnicodeDecodeError):
        return "invalid_payload", None
    if not isinstance(payload, dict):
        return "invalid_payload", None
    blocks = payload.get("blocks")
    text = payload.get("text")
    if text is not None and not isinstance(text, str):
        return "invalid_payload", payload
    if blocks is not None:
        if not isinstance(blocks, list):
            return "invalid_blocks_format", payload
        try:
            validate_blocks(blocks)
        except BlocksInvalid:
            return "invalid_blocks", payload
    if not text and not blocks and not payload.get("attachments"):
        return "no_text", payload
    return "ok", payload


class FakeSlack:
    def __init__(self):
        self.received: list[Received] = []
        self._hooks: dict[str, _Hook] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> FakeSlack:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- hooks -----------------------------------------------------------------------
    def webhook_url(self, state: str = "ok") -> str:
        """A new incoming-webhook URL shaped like Slack's, answered according to `state`."""
        token = secrets.token_urlsafe(18)
        path = f"/services/T{secrets.token_hex(4).upper()}/B{secrets.token_hex(4).upper()}/{token}"
        with self._lock:
            self._hooks[path] = _Hook(state=state)
        return self.base_url + path

    def set_hook(self, url: str, state: str) -> None:
        assert state == "ok" or state in ERRORS, state
        with self._lock:
            self._hooks[urlsplit(url).path].state = state

    def queue(self, url: str, error: str, *, retry_after: int | None = None) -> None:
        """Answer the next post to `url` with `error` (then go back to the hook's state)."""
        assert error in ERRORS, error
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            self._hooks[urlsplit(url).path].queued.append((error, headers))

    def messages(self, url: str | None = None) -> list[dict]:
        """Payloads Slack accepted (200 ok), optionally for one hook only."""
        path = urlsplit(url).path if url else None
        with self._lock:
            return [r.payload for r in self.received if r.status == 200 and (path is None or r.path == path)]

    def posts(self, url: str | None = None) -> list[Received]:
        path = urlsplit(url).path if url else None
        with self._lock:
            return [r for r in self.received if path is None or r.path == path]

    # -- the server --------------------------------------------------------------------
    def _answer(self, path: str, content_type: str, body: bytes) -> tuple[int, str, dict[str, str], dict | None]:
        with self._lock:
            hook = self._hooks.get(path)
            if hook is None:
                # Slack's answer for a URL that is not (or no longer) an incoming webhook.
                return 404, "no_service", {}, None
            if hook.queued:
                error, headers = hook.queued.pop(0)
                return ERRORS[error], error, headers, None
            state = hook.state
        if state != "ok":
            return ERRORS[state], state, {}, None
        answer, payload = check_payload(content_type, body)
        return (200 if answer == "ok" else ERRORS[answer]), answer, {}, payload

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path = urlsplit(self.path).path
                status, answer, headers, payload = fake._answer(path, self.headers.get("Content-Type", ""), body)
                with fake._lock:
                    fake.received.append(Received(path, dict(self.headers), body, status, answer, payload))
                self._reply(status, answer, headers)

            def do_GET(self):
                self._reply(405, "invalid_method", {})

            def _reply(self, status: int, text: str, headers: dict[str, str]) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format, *args):  # keep test output (and hook tokens) out of stderr
                pass

        return Handler
