"""Linear's GraphQL API, one function per remote call, through the one outbound HTTP door.

Docs:
- endpoint and authentication: https://linear.app/developers/graphql
  (a personal API key goes in `Authorization` as it is, with no `Bearer` prefix;
  `Bearer` is for OAuth access tokens)
- pagination: https://linear.app/developers/pagination (`first`/`after`, `pageInfo`)
- filtering: https://linear.app/developers/filtering (`IssueFilter`, comparators)
- rate limits: https://linear.app/developers/rate-limiting (a `RATELIMITED` error code,
  sent with HTTP 400, and `X-RateLimit-Requests-*` headers; the reset is epoch milliseconds)

Every query sent is listed in `QUERIES`; a contract test validates each one against the
schema Linear publishes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings

from integrations import http

TIMEOUT = 30.0
# A page of 50 issues with descriptions and comments can pass the door's default 1 MB cap.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
KEY_HELP = (
    "Create a personal API key in Linear (Settings → Security & access → Personal API keys) and update the provider."
)

# Linear caps one query at 10,000 complexity points and multiplies nested connections by
# their `first` (https://linear.app/developers/rate-limiting); 50 issues with 20 labels and
# 20 comments each stays near 4,000.
PAGE_SIZE = 50
ISSUE_FIELDS = """
      id
      identifier
      title
      description
      url
      createdAt
      updatedAt
      state { id name type }
      team { id key name }
      project { id name }
      assignee { id name displayName }
      labels(first: 20) { nodes { id name } }
      comments(first: 20) { nodes { body createdAt user { name displayName } } }
"""

ISSUES_QUERY = (
    """query OptioIssues($filter: IssueFilter, $first: Int, $after: String) {
  issues(filter: $filter, first: $first, after: $after, orderBy: updatedAt) {
    nodes {"""
    + ISSUE_FIELDS
    + """    }
    pageInfo { hasNextPage endCursor }
  }
}"""
)

VIEWER_QUERY = """query OptioViewer {
  viewer { id name email }
}"""

QUERIES: dict[str, str] = {"OptioIssues": ISSUES_QUERY, "OptioViewer": VIEWER_QUERY}


class LinearError(Exception):
    """A call to Linear failed. `str(exc)` is a sentence a person can act on; it never holds the key."""

    kind = "error"

    def __init__(self, message: str, *, status: int | None = None):
        self.status = status
        super().__init__(message)


class LinearAuthError(LinearError):
    kind = "bad_credentials"


class LinearForbidden(LinearError):
    kind = "forbidden"


class LinearRateLimited(LinearError):
    kind = "rate_limited"

    def __init__(self, message: str, *, status: int | None = None, reset_at: datetime | None = None):
        self.reset_at = reset_at
        super().__init__(message, status=status)


class LinearUnavailable(LinearError):
    kind = "unavailable"


class LinearQueryError(LinearError):
    """Linear refused the query or its variables (for example an unknown team id)."""

    kind = "invalid_request"


@dataclass
class IssuePage:
    issues: list[dict]
    has_next_page: bool
    end_cursor: str | None


def execute(api_key: str, query: str, variables: dict | None = None) -> dict:
    """POST one GraphQL operation and return its `data`, or raise a LinearError subclass."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    headers = {"Authorization": api_key, "Content-Type": "application/json", "Accept": "application/json"}
    try:
        resp = http.request(
            "POST",
            settings.LINEAR_API_URL,
            headers=headers,
            body=body,
            timeout=TIMEOUT,
            max_response=MAX_RESPONSE_BYTES,
        )
    except http.OutboundError as exc:
        raise LinearUnavailable(f"Linear could not be reached: {exc.reason}") from None
    if resp.truncated:
        raise LinearError("Linear's answer was larger than Optio accepts; narrow the provider's filters.")
    try:
        payload = resp.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        if resp.status >= 500:
            raise LinearUnavailable(f"Linear answered HTTP {resp.status}; it will be tried again.", status=resp.status)
        raise LinearError(f"Linear answered HTTP {resp.status} without a GraphQL body.", status=resp.status)
    errors = payload.get("errors") or []
    if errors:
        raise _classify(errors, resp)
    if resp.status >= 500:
        raise LinearUnavailable(f"Linear answered HTTP {resp.status}; it will be tried again.", status=resp.status)
    if resp.status != 200 or not isinstance(payload.get("data"), dict):
        raise LinearError(f"Linear answered HTTP {resp.status} without data.", status=resp.status)
    return payload["data"]


def _classify(errors: list, resp: http.Response) -> LinearError:
    def ext(err) -> dict:
        return (err.get("extensions") or {}) if isinstance(err, dict) else {}

    codes = {str(ext(e).get("code", "")).upper() for e in errors}
    types = {str(ext(e).get("type", "")).lower() for e in errors}
    first = errors[0] if isinstance(errors[0], dict) else {}
    said = ext(first).get("userPresentableMessage") or first.get("message") or "no message"
    if "AUTHENTICATION_ERROR" in codes or "authentication error" in types or resp.status == 401:
        return LinearAuthError(f"Linear rejected the API key ({said}). {KEY_HELP}", status=resp.status)
    if "RATELIMITED" in codes:
        reset_at = _reset_at(resp.header("x-ratelimit-requests-reset"))
        when = f" until {reset_at:%H:%M} UTC" if reset_at else ""
        return LinearRateLimited(
            f"Linear's rate limit for this API key is used up{when}; syncing resumes after that.",
            status=resp.status,
            reset_at=reset_at,
        )
    if "FORBIDDEN" in codes or "forbidden" in types or resp.status == 403:
        return LinearForbidden(f"The API key may not read these issues ({said}).", status=resp.status)
    if resp.status >= 500:
        return LinearUnavailable(f"Linear failed with HTTP {resp.status} ({said}).", status=resp.status)
    messages = "; ".join(str(e.get("message", "")) for e in errors[:3] if isinstance(e, dict))
    return LinearQueryError(f"Linear refused the request: {messages or said}", status=resp.status)


def _reset_at(raw: str | None) -> datetime | None:
    try:
        ms = int(float(raw or ""))
    except ValueError:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def list_issues(api_key: str, *, filter: dict, first: int = PAGE_SIZE, after: str | None = None) -> IssuePage:
    """One page of `issues(filter:, first:, after:, orderBy: updatedAt)`.

    https://linear.app/developers/pagination
    """
    data = execute(api_key, ISSUES_QUERY, {"filter": filter, "first": first, "after": after})
    conn = data.get("issues") or {}
    info = conn.get("pageInfo") or {}
    return IssuePage(
        issues=list(conn.get("nodes") or []),
        has_next_page=bool(info.get("hasNextPage")),
        end_cursor=info.get("endCursor"),
    )


def viewer(api_key: str) -> dict:
    """The user the key belongs to: a cheap way to check a key works."""
    return execute(api_key, VIEWER_QUERY)["viewer"]
