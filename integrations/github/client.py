"""GitHub REST client: one function per remote call, every request through `integrations.http`.

- Base URL: `settings.GITHUB_API_URL` (GitHub Enterprise: `https://HOST/api/v3`; tests: the fake).
- Token: the `GITHUB_TOKEN` secret, the repository's own first, then the global one.
- Headers: `Authorization: Bearer`, `Accept: application/vnd.github+json`,
  `X-GitHub-Api-Version: 2022-11-28`.
- Lists follow the `Link` header up to a page cap.
- GETs are conditional: the stored ETag goes out as `If-None-Match` and a 304 (free of rate
  limit for authenticated requests) reuses the stored body.
- Failures become `GitHubError` subclasses whose message is a sentence a person can act on:
  `MissingToken`, `BadCredentials` (401), `RateLimited` (primary and secondary), `Forbidden`,
  `NotFound`, `Unprocessable` (422), `Unavailable` (5xx, timeouts, refused connections).

https://docs.github.com/en/rest/using-the-rest-api/getting-started-with-the-rest-api
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
from django.conf import settings

from integrations import http
from integrations.github import etags
from optio import secrets
from optio.models import Repo

API_VERSION = "2022-11-28"
TOKEN_SECRET = "GITHUB_TOKEN"
PER_PAGE = 100  # GitHub's maximum; fewer pages means fewer round trips
MAX_PAGES = 10
# A page of 100 issues with long bodies can pass the door's 1 MB default.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
TIMEOUT = 15.0
WHERE_TO_SET_TOKEN = (
    'Set it with POST /api/secrets {"name": "GITHUB_TOKEN", "value": "<token>"} (add "repoUrl" to set it '
    "for one repository only); Settings → Secrets lists the secrets that are set."
)


class GitHubError(Exception):
    """A GitHub call failed; `str(exc)` is a sentence a person can act on."""

    kind = "github_error"

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


class MissingToken(GitHubError):
    kind = "missing_token"


class BadCredentials(GitHubError):
    kind = "bad_credentials"


class Forbidden(GitHubError):
    kind = "forbidden"


class NotFound(GitHubError):
    kind = "not_found"


class Unprocessable(GitHubError):
    kind = "unprocessable"


class Unavailable(GitHubError):
    kind = "unavailable"


class RateLimited(GitHubError):
    """Primary (quota used up until `reset_at`) or secondary (too fast; wait `retry_after` seconds)."""

    kind = "rate_limited"

    def __init__(
        self, message: str, *, status: int, secondary: bool, retry_after: int | None, reset_at: datetime | None
    ):
        super().__init__(message, status=status)
        self.secondary = secondary
        self.retry_after = retry_after
        self.reset_at = reset_at


@dataclass
class Listing:
    """Items of every page fetched; `truncated` when the page cap stopped before the last page."""

    items: list[dict] = field(default_factory=list)
    pages: int = 0
    not_modified: bool = True  # every page was answered 304
    truncated: bool = False
    etags: list[str] = field(default_factory=list)  # one per page; equal ETags mean equal items

    def __iter__(self) -> Iterator[dict]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def token_for(repo: Repo | None) -> str:
    """The GITHUB_TOKEN secret a call for `repo` uses, or MissingToken naming where to set it."""
    token = secrets.get_value(TOKEN_SECRET, repo)
    if not token:
        where = f" for {repo.full_name}" if repo is not None else ""
        raise MissingToken(f"No GITHUB_TOKEN secret is set{where}, so Optio cannot read GitHub. {WHERE_TO_SET_TOKEN}")
    return token


# -- Issues ---------------------------------------------------------------------------------


def list_issues(
    repo: Repo,
    *,
    state: str = "open",
    labels: Iterable[str] | str | None = None,
    assignee: str | None = None,
    since: datetime | str | None = None,
    sort: str | None = None,
    direction: str | None = None,
    per_page: int = PER_PAGE,
    max_pages: int = MAX_PAGES,
    token: str | None = None,
    store=None,
    shape: etags.Shape = etags.JSON,
) -> Listing:
    """Issues of `repo`, pull requests left out (GitHub's issues endpoint returns both).

    `labels`: every label must be present (GitHub's semantics). `assignee`: a login,
    `none` or `*`. `since`: only issues updated at or after this time. `shape`: how pages are
    decoded (default: plain JSON dicts; a shape decoding to objects must give them a
    `pull_request` attribute, None for issues).
    https://docs.github.com/en/rest/issues/issues#list-repository-issues
    """
    params: dict[str, Any] = {"state": state, "per_page": per_page}
    if labels:
        params["labels"] = labels if isinstance(labels, str) else ",".join(labels)
    if assignee:
        params["assignee"] = assignee
    if since:
        params["since"] = _iso(since)
    if sort:
        params["sort"] = sort
    if direction:
        params["direction"] = direction
    path = _repo_path(repo, "issues")
    listing = _paginate(repo, path, params, max_pages=max_pages, token=token, store=store, shape=shape)
    # https://docs.github.com/en/rest/issues/issues#list-repository-issues: "GitHub's REST API
    # considers every pull request an issue" — PRs carry a `pull_request` key.
    if shape is etags.JSON:
        listing.items = [item for item in listing.items if "pull_request" not in item]
    else:
        listing.items = [item for item in listing.items if not item.is_pull_request]
    return listing


def get_issue(repo: Repo, number: int, *, token: str | None = None, store=None) -> dict:
    """https://docs.github.com/en/rest/issues/issues#get-an-issue"""
    return _get(repo, _repo_path(repo, f"issues/{int(number)}"), token=token, store=store)


def list_issue_comments(
    repo: Repo,
    number: int,
    *,
    since: datetime | str | None = None,
    max_pages: int = MAX_PAGES,
    token: str | None = None,
    store=None,
) -> Listing:
    """https://docs.github.com/en/rest/issues/comments#list-issue-comments"""
    params: dict[str, Any] = {"per_page": PER_PAGE}
    if since:
        params["since"] = _iso(since)
    path = _repo_path(repo, f"issues/{int(number)}/comments")
    return _paginate(repo, path, params, max_pages=max_pages, token=token, store=store)


def create_comment(repo: Repo, number: int, body: str, *, token: str | None = None) -> dict:
    """https://docs.github.com/en/rest/issues/comments#create-an-issue-comment"""
    return _send(repo, "POST", _repo_path(repo, f"issues/{int(number)}/comments"), {"body": body}, token=token)


def add_labels(repo: Repo, number: int, labels: Iterable[str], *, token: str | None = None) -> list[dict]:
    """Add labels (creating unknown ones, as GitHub does); returns the issue's labels.
    https://docs.github.com/en/rest/issues/labels#add-labels-to-an-issue"""
    path = _repo_path(repo, f"issues/{int(number)}/labels")
    return _send(repo, "POST", path, {"labels": list(labels)}, token=token)


def update_issue(
    repo: Repo,
    number: int,
    *,
    state: str | None = None,
    state_reason: str | None = None,
    token: str | None = None,
    **fields: Any,
) -> dict:
    """Change an issue: `state` open/closed, `state_reason` completed/not_planned/reopened, or
    other documented fields (title, body, labels, assignees, milestone).
    https://docs.github.com/en/rest/issues/issues#update-an-issue"""
    payload = dict(fields)
    if state is not None:
        payload["state"] = state
    if state_reason is not None:
        payload["state_reason"] = state_reason
    return _send(repo, "PATCH", _repo_path(repo, f"issues/{int(number)}"), payload, token=token)


# -- Generic calls other GitHub features build on -------------------------------------------


def get_json(repo: Repo, path: str, *, params: dict | None = None, token: str | None = None, store=None):
    """A conditional GET of any API path (`/repos/...`), for calls without their own function yet."""
    return _get(repo, path, params=params, token=token, store=store)


def paginate(
    repo: Repo, path: str, params: dict | None = None, *, max_pages: int = MAX_PAGES, token=None, store=None
) -> Listing:
    """Every page of a list endpoint, following `Link: rel="next"`, up to `max_pages`."""
    return _paginate(repo, path, dict(params or {}), max_pages=max_pages, token=token, store=store)


# -- Plumbing -------------------------------------------------------------------------------


def _repo_path(repo: Repo, rest: str) -> str:
    return f"/repos/{repo.owner}/{repo.name}/{rest}"


def _iso(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_url(path: str, params: dict | None = None) -> str:
    base = settings.GITHUB_API_URL.rstrip("/")
    query = urlencode(sorted((params or {}).items()))
    return f"{base}{path}" + (f"?{query}" if query else "")


def _headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
    }


_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="([^"]+)"')


def next_link(link_header: str | None) -> str | None:
    """The `rel="next"` URL of a Link header.
    https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api"""
    for url, rel in _LINK.findall(link_header or ""):
        if "next" in rel.split():
            return url
    return None


def _listing_key(url: str) -> str:
    """The URL without its `page` parameter: all pages of one listing share an ETag scope."""
    parts = urlsplit(url)
    query = sorted((k, v) for k, v in parse_qsl(parts.query) if k != "page")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def listing_scope(token: str, path: str, params: dict | None = None) -> str:
    """The ETag scope of a listing, so a caller can preload its pages (see `etags.PreloadedStore`)."""
    return etags.scope_key(token, _listing_key(api_url(path, params)))


def _get(repo: Repo, path: str, *, params: dict | None = None, token: str | None = None, store=None):
    token = token or token_for(repo)
    url = api_url(path, params)
    data, _, _, _ = _conditional_get(repo, url, etags.scope_key(token, _listing_key(url)), token, store)
    return data


def _paginate(repo: Repo, path: str, params: dict, *, max_pages: int, token, store, shape=etags.JSON) -> Listing:
    token = token or token_for(repo)
    url: str | None = api_url(path, params)
    scope = etags.scope_key(token, _listing_key(url))
    base = settings.GITHUB_API_URL.rstrip("/")
    listing = Listing()
    while url:
        if listing.pages >= max_pages:
            listing.truncated = True
            break
        data, link, fresh, etag = _conditional_get(repo, url, scope, token, store, shape)
        listing.pages += 1
        listing.etags.append(etag)
        listing.not_modified = listing.not_modified and not fresh
        if not isinstance(data, list):
            raise Unavailable(f"GitHub answered {url} with something other than a list.")
        listing.items.extend(data)
        url = next_link(link)
        # The token only ever goes to the configured API; a Link pointing elsewhere ends the walk.
        if url and not url.startswith(base + "/"):
            raise Unavailable(f"GitHub's pagination pointed outside {base}; stopped following it.")
    return listing


def _conditional_get(
    repo: Repo, url: str, scope: str, token: str, store, shape: etags.Shape = etags.JSON
) -> tuple[Any, str, bool, str]:
    """(data, link header, fresh, etag): fresh is False when a 304 let the cached body answer."""
    store = store if store is not None else etags.DbStore()
    key = etags.cache_key(token, url)
    cached = store.get(scope, key)
    headers = _headers(token)
    if cached is not None:
        headers["If-None-Match"] = cached.etag
    response = _request("GET", url, headers, None, repo)
    if response.status == 304 and cached is not None:
        store.revalidated(key, cached)
        return _decoded(url, lambda: etags.parsed(scope, key, cached, shape)), cached.link, False, cached.etag
    _raise_for_status(response, repo, url)
    data = _decoded(url, lambda: shape.decode(response.body), response.status)
    etag = response.header("etag")
    link = response.header("link") or ""
    if etag:
        page = etags.CachedPage(etag, link, body=response.body, data=data, shape=shape.name)
        etags.memo.put(scope, key, page, len(response.body))
        store.put(scope, key, url, page)
    return data, link, True, etag or ""


def _send(repo: Repo, method: str, path: str, payload: dict, *, token: str | None):
    token = token or token_for(repo)
    url = api_url(path)
    headers = _headers(token) | {"Content-Type": "application/json"}
    response = _request(method, url, headers, json.dumps(payload).encode(), repo)
    _raise_for_status(response, repo, url)
    return _decode(response, url) if response.body else None


def _request(method: str, url: str, headers: dict, body: bytes | None, repo: Repo) -> http.Response:
    try:
        response = http.request(
            method, url, headers=headers, body=body, timeout=TIMEOUT, max_response=MAX_RESPONSE_BYTES
        )
    except http.OutboundError as exc:
        raise Unavailable(f"Could not reach GitHub for {repo.full_name}: {exc.reason}") from None
    if response.truncated:
        raise Unavailable(f"GitHub's answer for {repo.full_name} was larger than {MAX_RESPONSE_BYTES} bytes.")
    return response


def _decode(response: http.Response, url: str):
    return _decoded(url, lambda: etags.loads(response.body), response.status)


def _decoded(url: str, decode: Callable[[], Any], status: int | None = None):
    try:
        return decode()
    except (ValueError, msgspec.DecodeError) as exc:
        where = f" (HTTP {status})" if status else " (cached)"
        raise Unavailable(f"GitHub answered {url} with a body Optio cannot read{where}: {exc}") from None


def _message(response: http.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("message", "")) if isinstance(body, dict) else ""


def _raise_for_status(response: http.Response, repo: Repo, url: str) -> None:
    status = response.status
    if 200 <= status < 300:
        return
    message = _message(response)
    name = repo.full_name
    if status == 401:
        raise BadCredentials(
            f"GitHub rejected the GITHUB_TOKEN secret used for {name} (401 {message or 'Bad credentials'}); "
            f"it may be revoked or expired. Replace it: {WHERE_TO_SET_TOKEN}",
            status=status,
        )
    if status in (403, 429):
        limited = _rate_limit(response, message, name)
        if limited:
            raise limited
        raise Forbidden(
            f"GitHub refused access to {name} (403 {message or 'Forbidden'}); give the GITHUB_TOKEN "
            "the Issues permission (read, and write for write-back) on this repository.",
            status=status,
        )
    if status == 404:
        raise NotFound(
            f"GitHub has no {url.removeprefix(settings.GITHUB_API_URL.rstrip('/'))} for {name}, or the GITHUB_TOKEN "
            "cannot see it; check the repository URL and that the token has access to it.",
            status=status,
        )
    if status == 410:
        raise NotFound(f"GitHub says this is gone for {name} (410 {message}); issues may be disabled.", status=status)
    if status == 422:
        raise Unprocessable(f"GitHub refused the request for {name} (422 {message}).", status=status)
    if status >= 500:
        raise Unavailable(
            f"GitHub had an error answering for {name} (HTTP {status}); try again shortly.", status=status
        )
    raise GitHubError(f"GitHub answered HTTP {status} for {name}: {message or 'no message'}.", status=status)


def _rate_limit(response: http.Response, message: str, name: str) -> RateLimited | None:
    """Read GitHub's rate-limit signals; None when a 403 is about permissions instead.
    https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api"""
    remaining = response.header("x-ratelimit-remaining")
    reset = response.header("x-ratelimit-reset")
    retry_after = response.header("retry-after")
    secondary = "secondary rate limit" in message.lower()
    if not (remaining == "0" or retry_after or "rate limit" in message.lower() or response.status == 429):
        return None
    reset_at = None
    if reset and reset.isdigit():
        reset_at = datetime.fromtimestamp(int(reset), tz=UTC)
    wait = int(retry_after) if retry_after and retry_after.isdigit() else None
    if retry_after or secondary or remaining != "0":
        # GitHub: with no Retry-After on a secondary limit, wait at least a minute.
        wait = wait if wait is not None else 60
        return RateLimited(
            f"GitHub's secondary rate limit stopped requests for {name} (too many requests at once); "
            f"Optio will be able to ask again in {wait} s.",
            status=response.status,
            secondary=True,
            retry_after=wait,
            reset_at=reset_at,
        )
    when = f"at {reset_at:%H:%M:%S} UTC" if reset_at else "within the hour"
    return RateLimited(
        f"The GITHUB_TOKEN used for {name} has used up its GitHub API rate limit; it resets {when}.",
        status=response.status,
        secondary=False,
        retry_after=max(0, int((reset_at - datetime.now(UTC)).total_seconds())) if reset_at else None,
        reset_at=reset_at,
    )
