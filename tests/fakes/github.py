"""A fake GitHub REST API: a real HTTP server on 127.0.0.1 (ephemeral port) speaking GitHub's shapes.

Implemented (https://docs.github.com/en/rest/issues):
  GET   /repos/{owner}/{repo}/issues                 state, labels, assignee, creator, since, sort,
                                                     direction, per_page, page; PRs mixed in
  GET   /repositories/{id}/issues                    the same; GitHub's Link headers point here
  GET   /repos/{owner}/{repo}/issues/{number}
  PATCH /repos/{owner}/{repo}/issues/{number}        state, state_reason, title, body, labels, assignees
  GET   /repos/{owner}/{repo}/issues/{number}/comments
  POST  /repos/{owner}/{repo}/issues/{number}/comments
  POST  /repos/{owner}/{repo}/issues/{number}/labels
  GET   /rate_limit

Behaviour tests can rely on: `Link` pagination (next/last/first/prev), ETags with
`If-None-Match` → 304 (a 304 does not use the rate limit, as on GitHub), `x-ratelimit-*`
headers, 401 for unknown tokens, injected latency (`latency`, `delay()`) and faults (`fail()`, `rate_limit_exhausted()`,
`secondary_rate_limit()`), and a request log (`requests`) with headers. Objects follow the
documented examples kept in tests/fixtures/github/.

    with FakeGitHub() as gh:            # or the `fake_github` pytest fixture below
        gh.add_issue("acme/webapp", "Fix login", labels=["bug"])
        settings.GITHUB_API_URL = gh.url
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

DEFAULT_TOKEN = "ghp_fake0123456789abcdefghijklmnopqrstuv"
DOCS = "https://docs.github.com/rest"
WEB = "https://github.com"


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int = 0


@dataclass
class Fault:
    status: int
    path: str | None = None  # substring of the request path
    method: str | None = None
    times: int | None = 1  # None: every matching request
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "Server Error"
    after: int = 0  # let this many matching requests through first ("a 500 on page 3": after=2)


@dataclass
class FakeIssue:
    number: int
    id: int
    title: str
    body: str | None
    user: str
    labels: list[str]
    assignees: list[str]
    state: str = "open"
    state_reason: str | None = None
    pull_request: bool = False
    comments: list[dict] = field(default_factory=list)
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)
    closed_at: datetime | None = None


@dataclass
class FakeRepo:
    id: int
    owner: str
    name: str
    issues: dict[int, FakeIssue] = field(default_factory=dict)
    label_ids: dict[str, int] = field(default_factory=dict)
    version: int = 0  # bumped on every change; keys the serialised-page cache

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class FakeGitHub:
    def __init__(self, *, token: str = DEFAULT_TOKEN, latency: float = 0.0, rate_limit: int = 5000):
        self.tokens = {token}
        self.token = token
        self.latency = latency
        self.rate_limit = rate_limit
        self.remaining: dict[str, int] = {}
        self.reset_at = int(time.time()) + 3600
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[LoggedRequest] = []
        self.faults: list[Fault] = []
        self.path_latency: dict[str, float] = {}  # extra seconds for paths containing the key
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests being answered at once: shows client concurrency
        self._lock = threading.RLock()
        self._ids = itertools.count(1000)
        self._pages: dict[tuple, tuple[bytes, str, str]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._address: tuple[str, int] = ("127.0.0.1", 0)
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        handler = type("Handler", (_Handler,), {"fake": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler, bind_and_activate=False)
        server.daemon_threads = True
        server.request_queue_size = 128  # the default backlog of 5 drops concurrent connects
        server.server_bind()
        server.server_activate()
        self._server = server
        self._address = server.server_address[:2]  # kept after stop() for answers still in flight
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._address
        return f"http://{host}:{port}"

    # -- data --------------------------------------------------------------------------------

    def add_repo(self, full_name: str) -> FakeRepo:
        owner, name = full_name.split("/")
        with self._lock:
            key = full_name.lower()
            if key not in self.repos:
                self.repos[key] = FakeRepo(id=next(self._ids), owner=owner, name=name)
            return self.repos[key]

    def add_issue(
        self,
        full_name: str,
        title: str,
        body: str | None = "",
        *,
        labels: list[str] | tuple = (),
        assignee: str | None = None,
        assignees: list[str] | None = None,
        user: str = "octocat",
        state: str = "open",
        pull_request: bool = False,
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> FakeIssue:
        repo = self.add_repo(full_name)
        with self._lock:
            number = max(repo.issues, default=0) + 1
            created = created_at or _now()
            issue = FakeIssue(
                number=number,
                id=next(self._ids),
                title=title,
                body=body,
                user=user,
                labels=list(labels),
                assignees=list(assignees if assignees is not None else ([assignee] if assignee else [])),
                state=state,
                pull_request=pull_request,
                created_at=created,
                updated_at=updated_at or created,
                closed_at=created if state == "closed" else None,
                state_reason="completed" if state == "closed" else None,
            )
            repo.issues[number] = issue
            for name in issue.labels:
                repo.label_ids.setdefault(name, next(self._ids))
            repo.version += 1
            return issue

    def add_comment(self, full_name: str, number: int, body: str, *, user: str = "octocat") -> dict:
        with self._lock:
            repo = self.repos[full_name.lower()]
            issue = repo.issues[number]
            now = _now()
            comment = {"id": next(self._ids), "body": body, "user": user, "created_at": now, "updated_at": now}
            issue.comments.append(comment)
            issue.updated_at = now
            repo.version += 1
            return self._comment_json(repo, issue, comment)

    def issue(self, full_name: str, number: int) -> FakeIssue:
        return self.repos[full_name.lower()].issues[number]

    def touch(self, full_name: str, number: int, **changes) -> None:
        """Change an issue as someone on GitHub would (bumps updated_at and the ETag)."""
        with self._lock:
            repo = self.repos[full_name.lower()]
            issue = repo.issues[number]
            for name, value in changes.items():
                setattr(issue, name, value)
            issue.updated_at = max(_now(), issue.updated_at + timedelta(seconds=1))
            repo.version += 1

    # -- faults and log ----------------------------------------------------------------------

    def fail(self, status: int = 500, *, path: str | None = None, method: str | None = None, times: int | None = 1,
             headers: dict | None = None, message: str = "Server Error", after: int = 0) -> Fault:  # fmt: skip
        fault = Fault(status, path, method, times, dict(headers or {}), message, after)
        with self._lock:
            self.faults.append(fault)
        return fault

    def rate_limit_exhausted(self, *, path: str | None = None, times: int | None = 1, status: int = 403) -> Fault:
        """A primary rate limit: 403 with x-ratelimit-remaining: 0, as GitHub documents."""
        return self.fail(
            status,
            path=path,
            times=times,
            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(self.reset_at)},
            message="API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID.",
        )

    def secondary_rate_limit(self, *, retry_after: int = 60, path: str | None = None, status: int = 429) -> Fault:
        """A secondary rate limit: 403/429 with Retry-After."""
        return self.fail(
            status,
            path=path,
            headers={"retry-after": str(retry_after)},
            message="You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        )

    def delay(self, path_part: str, seconds: float) -> None:
        """Answer requests whose path contains `path_part` `seconds` later (on top of `latency`)."""
        with self._lock:
            self.path_latency[path_part] = seconds

    def requests_to(self, path_part: str = "", method: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.requests if path_part in r.path and (method is None or r.method == method)]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.max_in_flight = self.in_flight

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if (fault.path is None or fault.path in path) and (fault.method in (None, method)):
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self.faults.remove(fault)
                    return fault
        return None

    # -- JSON shapes (tests/fixtures/github/*.json) ------------------------------------------

    def _user_json(self, login: str) -> dict:
        base = f"{self.url}/users/{login}"
        return {
            "login": login,
            "id": int(hashlib.sha1(login.encode()).hexdigest()[:6], 16),  # noqa: S324 - an id, not security
            "node_id": "MDQ6VXNlcjE=",
            "avatar_url": f"{WEB}/images/error/{login}_happy.gif",
            "gravatar_id": "",
            "url": base,
            "html_url": f"{WEB}/{login}",
            "followers_url": f"{base}/followers",
            "following_url": f"{base}/following{{/other_user}}",
            "gists_url": f"{base}/gists{{/gist_id}}",
            "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{base}/subscriptions",
            "organizations_url": f"{base}/orgs",
            "repos_url": f"{base}/repos",
            "events_url": f"{base}/events{{/privacy}}",
            "received_events_url": f"{base}/received_events",
            "type": "User",
            "site_admin": False,
        }

    def _label_json(self, repo: FakeRepo, name: str) -> dict:
        return {
            "id": repo.label_ids.setdefault(name, next(self._ids)),
            "node_id": "MDU6TGFiZWwyMDgwNDU5NDY=",
            "url": f"{self.url}/repos/{repo.full_name}/labels/{name}",
            "name": name,
            "description": None,
            "color": "f29513",
            "default": name == "bug",
        }

    def _issue_json(self, repo: FakeRepo, issue: FakeIssue) -> dict:
        api = f"{self.url}/repos/{repo.full_name}"
        kind = "pull" if issue.pull_request else "issues"
        data = {
            "id": issue.id,
            "node_id": "MDU6SXNzdWUx",
            "url": f"{api}/issues/{issue.number}",
            "repository_url": api,
            "labels_url": f"{api}/issues/{issue.number}/labels{{/name}}",
            "comments_url": f"{api}/issues/{issue.number}/comments",
            "events_url": f"{api}/issues/{issue.number}/events",
            "html_url": f"{WEB}/{repo.full_name}/{kind}/{issue.number}",
            "number": issue.number,
            "state": issue.state,
            "title": issue.title,
            "body": issue.body,
            "user": self._user_json(issue.user),
            "labels": [self._label_json(repo, n) for n in issue.labels],
            "assignee": self._user_json(issue.assignees[0]) if issue.assignees else None,
            "assignees": [self._user_json(a) for a in issue.assignees],
            "milestone": None,
            "locked": False,
            "active_lock_reason": None,
            "comments": len(issue.comments),
            "closed_at": _iso(issue.closed_at),
            "created_at": _iso(issue.created_at),
            "updated_at": _iso(issue.updated_at),
            "closed_by": None,
            "author_association": "COLLABORATOR",
            "state_reason": issue.state_reason,
        }
        if issue.pull_request:
            web = f"{WEB}/{repo.full_name}/pull/{issue.number}"
            data["pull_request"] = {
                "url": f"{api}/pulls/{issue.number}",
                "html_url": web,
                "diff_url": f"{web}.diff",
                "patch_url": f"{web}.patch",
                "merged_at": None,
            }
        return data

    def _comment_json(self, repo: FakeRepo, issue: FakeIssue, comment: dict) -> dict:
        api = f"{self.url}/repos/{repo.full_name}"
        return {
            "id": comment["id"],
            "node_id": "MDEyOklzc3VlQ29tbWVudDE=",
            "url": f"{api}/issues/comments/{comment['id']}",
            "html_url": f"{WEB}/{repo.full_name}/issues/{issue.number}#issuecomment-{comment['id']}",
            "body": comment["body"],
            "user": self._user_json(comment["user"]),
            "created_at": _iso(comment["created_at"]),
            "updated_at": _iso(comment["updated_at"]),
            "issue_url": f"{api}/issues/{issue.number}",
            "author_association": "COLLABORATOR",
        }


class _HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None, errors: list | None = None):
        self.status, self.message, self.headers, self.errors = status, message, headers or {}, errors


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGitHub
    protocol_version = "HTTP/1.1"  # keep-alive, so client connection pooling is exercised

    def log_message(self, *args) -> None:
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PATCH(self):
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        entry = LoggedRequest(
            method, parts.path, dict(parse_qsl(parts.query)), {k.lower(): v for k, v in self.headers.items()}, body
        )
        with fake._lock:
            fake.requests.append(entry)
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            delay = fake.latency + sum(v for k, v in fake.path_latency.items() if k in parts.path)
            if delay:
                time.sleep(delay)
            self._answer(method, parts, entry, body)
        finally:
            with fake._lock:
                fake.in_flight -= 1

    def _answer(self, method: str, parts, entry: LoggedRequest, body: bytes) -> None:
        fake = self.fake
        token = self._token(entry.headers.get("authorization", ""))
        extra: dict[str, str] = {}
        try:
            if token not in fake.tokens:
                raise _HttpError(401, "Bad credentials")
            fault = fake._take_fault(method, parts.path)
            if fault:
                extra = dict(fault.headers)
                raise _HttpError(fault.status, fault.message, fault.headers)
            with fake._lock:
                if fake.remaining.get(token, fake.rate_limit) <= 0:
                    raise _HttpError(403, "API rate limit exceeded for user ID 1.")
            status, payload, headers = self._route(method, parts.path, entry.query, body)
            etag = headers.get("ETag")
            if method == "GET" and etag and _matches(entry.headers.get("if-none-match"), etag):
                status, payload = 304, b""
            if status != 304:
                with fake._lock:  # GitHub: a 304 does not count against the primary rate limit
                    fake.remaining[token] = fake.remaining.get(token, fake.rate_limit) - 1
        except _HttpError as exc:
            status, headers = exc.status, dict(extra)
            error = {"message": exc.message, "documentation_url": DOCS, "status": str(exc.status)}
            if exc.errors:
                error["errors"] = exc.errors
            payload = json.dumps(error).encode()
        entry.status = status
        self._send(status, payload, headers, token)

    @staticmethod
    def _token(header: str) -> str | None:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() in ("bearer", "token") else None

    def _send(self, status: int, payload: bytes, headers: dict, token: str | None) -> None:
        fake = self.fake
        self.send_response(status)
        lower = {k.lower() for k in headers}
        if token in fake.tokens:
            remaining = max(0, fake.remaining.get(token, fake.rate_limit))
            rate = {
                "x-ratelimit-limit": str(fake.rate_limit),
                "x-ratelimit-remaining": str(remaining),
                "x-ratelimit-reset": str(fake.reset_at),
                "x-ratelimit-used": str(fake.rate_limit - remaining),
                "x-ratelimit-resource": "core",
            }
            for name, value in rate.items():
                if name not in lower:
                    self.send_header(name, value)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("X-GitHub-Api-Version-Selected", "2022-11-28")
        if status != 304:
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if status != 304:
            self.wfile.write(payload)

    # -- routes ------------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, bytes, dict]:
        fake = self.fake
        segs = [s for s in path.split("/") if s]
        if segs == ["rate_limit"] and method == "GET":
            return self._json(200, {"resources": {"core": {"limit": fake.rate_limit}}})
        if len(segs) >= 3 and segs[0] == "repositories" and segs[2] == "issues":
            repo = next((r for r in fake.repos.values() if str(r.id) == segs[1]), None)
            if repo is None:
                raise _HttpError(404, "Not Found")
            rest = segs[2:]
        elif len(segs) >= 4 and segs[0] == "repos" and segs[3] == "issues":
            repo = fake.repos.get(f"{segs[1]}/{segs[2]}".lower())
            if repo is None:
                raise _HttpError(404, "Not Found")
            rest = segs[3:]
        else:
            raise _HttpError(404, "Not Found")
        if rest == ["issues"] and method == "GET":
            return self._list_issues(repo, query)
        if len(rest) >= 2 and rest[1].isdigit():
            with fake._lock:
                issue = repo.issues.get(int(rest[1]))
            if issue is None:
                raise _HttpError(404, "Not Found")
            tail = rest[2:]
            if tail == [] and method == "GET":
                with fake._lock:
                    return self._json(200, fake._issue_json(repo, issue), etag=True)
            if tail == [] and method == "PATCH":
                return self._update_issue(repo, issue, _load(body))
            if tail == ["comments"] and method == "GET":
                return self._list_comments(repo, issue, query)
            if tail == ["comments"] and method == "POST":
                data = _load(body)
                if not isinstance(data, dict) or not isinstance(data.get("body"), str) or not data["body"]:
                    raise _HttpError(422, "Validation Failed", errors=[{"resource": "IssueComment", "code": "missing_field", "field": "body"}])  # fmt: skip
                return self._json(201, fake.add_comment(repo.full_name, issue.number, data["body"], user="optio-bot"))
            if tail == ["labels"] and method == "POST":
                return self._add_labels(repo, issue, _load(body))
        raise _HttpError(404, "Not Found")

    def _json(self, status: int, data, *, etag: bool = False, link: str = "") -> tuple[int, bytes, dict]:
        payload = json.dumps(data, separators=(",", ":")).encode()
        headers = {}
        if etag:
            headers["ETag"] = 'W/"' + hashlib.sha256(payload).hexdigest()[:40] + '"'
        if link:
            headers["Link"] = link
        return status, payload, headers

    def _page(self, items, query: dict, base_path: str, cache_key: tuple) -> tuple[int, bytes, dict]:
        """One page of `items()` with Link headers; built pages are kept per data version,
        because serialising is the slow part of the fake and must not blur latency figures."""
        fake = self.fake
        try:
            per_page = min(100, max(1, int(query.get("per_page", 30))))
            page = max(1, int(query.get("page", 1)))
        except ValueError:
            raise _HttpError(422, "Validation Failed") from None
        key = (*cache_key, tuple(sorted(query.items())))
        with fake._lock:
            cached = fake._pages.get(key)
            if cached is None:
                everything = items()
        if cached:
            payload, etag, link = cached
            return 200, payload, {"ETag": etag, **({"Link": link} if link else {})}
        last = max(1, -(-len(everything) // per_page))
        chunk = everything[(page - 1) * per_page : page * per_page]
        params = {k: v for k, v in query.items() if k != "page"}

        def url(n: int) -> str:
            return f"{fake.url}{base_path}?{urlencode({**params, 'page': n})}"

        links = []
        if page < last:
            links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
        if page > 1:
            links += [f'<{url(1)}>; rel="first"', f'<{url(page - 1)}>; rel="prev"']
        status, payload, headers = self._json(200, chunk, etag=True, link=", ".join(links))
        with fake._lock:
            if len(fake._pages) > 10_000:
                fake._pages.clear()
            fake._pages[key] = (payload, headers["ETag"], headers.get("Link", ""))
        return status, payload, headers

    def _list_issues(self, repo: FakeRepo, query: dict) -> tuple[int, bytes, dict]:
        state = query.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise _HttpError(422, "Validation Failed", errors=[{"resource": "Issue", "field": "state", "code": "invalid"}])  # fmt: skip
        # GitHub's Link headers for repository issues use /repositories/{id}/issues.
        return self._page(
            lambda: self._filtered(repo, query, state),
            query,
            f"/repositories/{repo.id}/issues",
            ("issues", repo.id, repo.version),
        )

    def _filtered(self, repo: FakeRepo, query: dict, state: str) -> list[dict]:
        issues = list(repo.issues.values())
        if state != "all":
            issues = [i for i in issues if i.state == state]
        if labels := query.get("labels"):
            wanted = {n.strip().lower() for n in labels.split(",") if n.strip()}
            issues = [i for i in issues if wanted <= {n.lower() for n in i.labels}]
        if assignee := query.get("assignee"):
            if assignee == "none":
                issues = [i for i in issues if not i.assignees]
            elif assignee == "*":
                issues = [i for i in issues if i.assignees]
            else:
                issues = [i for i in issues if assignee.lower() in {a.lower() for a in i.assignees}]
        if creator := query.get("creator"):
            issues = [i for i in issues if i.user.lower() == creator.lower()]
        if since := query.get("since"):
            try:
                cutoff = _parse_iso(since)
            except ValueError:
                raise _HttpError(422, "Validation Failed", errors=[{"field": "since", "code": "invalid"}]) from None
            issues = [i for i in issues if i.updated_at >= cutoff]
        sort = query.get("sort", "created")
        keyfn = {
            "created": lambda i: (i.created_at, i.number),
            "updated": lambda i: (i.updated_at, i.number),
            "comments": lambda i: (len(i.comments), i.number),
        }.get(sort)
        if keyfn is None:
            raise _HttpError(422, "Validation Failed", errors=[{"field": "sort", "code": "invalid"}])
        issues.sort(key=keyfn, reverse=query.get("direction", "desc") != "asc")
        return [self.fake._issue_json(repo, i) for i in issues]

    def _list_comments(self, repo: FakeRepo, issue: FakeIssue, query: dict) -> tuple[int, bytes, dict]:
        fake = self.fake
        try:
            cutoff = _parse_iso(query["since"]) if query.get("since") else None
        except ValueError:
            raise _HttpError(422, "Validation Failed", errors=[{"field": "since", "code": "invalid"}]) from None

        def items() -> list[dict]:
            chosen = [c for c in issue.comments if cutoff is None or c["updated_at"] >= cutoff]
            return [fake._comment_json(repo, issue, c) for c in chosen]

        path = f"/repos/{repo.full_name}/issues/{issue.number}/comments"
        return self._page(items, query, path, ("comments", repo.id, repo.version, issue.number))

    def _add_labels(self, repo: FakeRepo, issue: FakeIssue, data) -> tuple[int, bytes, dict]:
        fake = self.fake
        names = data.get("labels") if isinstance(data, dict) else data
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _HttpError(422, "Invalid request.\n\nFor 'links/0/schema', nil is not an array.")
        with fake._lock:
            for name in names:
                if name not in issue.labels:
                    issue.labels.append(name)
            issue.updated_at = max(_now(), issue.updated_at)
            repo.version += 1
            return self._json(200, [fake._label_json(repo, n) for n in issue.labels])

    def _update_issue(self, repo: FakeRepo, issue: FakeIssue, data) -> tuple[int, bytes, dict]:
        fake = self.fake
        if not isinstance(data, dict):
            raise _HttpError(400, "Problems parsing JSON")
        state = data.get("state")
        if state is not None and state not in ("open", "closed"):
            raise _HttpError(422, "Validation Failed", errors=[{"resource": "Issue", "field": "state", "code": "invalid"}])  # fmt: skip
        reason = data.get("state_reason")
        if reason is not None and reason not in ("completed", "not_planned", "reopened"):
            raise _HttpError(422, "Validation Failed", errors=[{"resource": "Issue", "field": "state_reason", "code": "invalid"}])  # fmt: skip
        with fake._lock:
            if state == "closed" and issue.state != "closed":
                issue.closed_at = _now()
                issue.state_reason = reason or "completed"
            elif state == "open" and issue.state != "open":
                issue.closed_at = None
                issue.state_reason = reason or "reopened"
            elif reason is not None:
                issue.state_reason = reason
            if state:
                issue.state = state
            for name in ("title", "body"):
                if name in data:
                    setattr(issue, name, data[name])
            if "labels" in data:
                issue.labels = [n if isinstance(n, str) else n.get("name", "") for n in data["labels"]]
            if "assignees" in data:
                issue.assignees = list(data["assignees"])
            issue.updated_at = max(_now(), issue.updated_at)
            repo.version += 1
            return self._json(200, fake._issue_json(repo, issue))


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    strip = lambda v: v.strip().removeprefix("W/")  # noqa: E731 - weak comparison, as RFC 9110 says for 304
    return any(strip(v) == strip(etag) or v.strip() == "*" for v in if_none_match.split(","))


def _load(body: bytes):
    try:
        return json.loads(body or b"null")
    except ValueError:
        raise _HttpError(400, "Problems parsing JSON") from None


@pytest.fixture
def fake_github(settings):
    """A running FakeGitHub with settings.GITHUB_API_URL pointing at it (import it into a conftest)."""
    with FakeGitHub() as fake:
        settings.GITHUB_API_URL = fake.url
        yield fake
