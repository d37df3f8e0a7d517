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
  GET   /repos/{owner}/{repo}/pulls/{number}         (https://docs.github.com/en/rest/pulls)
  GET   /repos/{owner}/{repo}/pulls/{number}/reviews
  GET   /repos/{owner}/{repo}/commits/{ref}/check-runs   filter=latest|all, check_name, status
  GET   /repos/{owner}/{repo}/commits/{ref}/status   the combined status (latest per context)

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


def _sha(seed: str) -> str:
    """A stable 40-hex commit SHA for a seed string."""
    return hashlib.sha1(seed.encode()).hexdigest()  # noqa: S324 - a commit id, not security


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
class FakePull:
    """The pull-request side of an issue that is a PR (state, title and author live on the FakeIssue)."""

    number: int
    id: int
    head_sha: str
    head_ref: str
    base_ref: str = "main"
    merged: bool = False
    merged_at: datetime | None = None
    merge_commit_sha: str | None = None
    mergeable: bool | None = True
    mergeable_state: str = "clean"
    draft: bool = False
    reviews: list[dict] = field(default_factory=list)


@dataclass
class FakeRepo:
    id: int
    owner: str
    name: str
    issues: dict[int, FakeIssue] = field(default_factory=dict)
    label_ids: dict[str, int] = field(default_factory=dict)
    version: int = 0  # bumped on every change; keys the serialised-page cache
    pulls: dict[int, FakePull] = field(default_factory=dict)
    check_runs: dict[str, list[dict]] = field(default_factory=dict)  # by head SHA, oldest first
    statuses: dict[str, list[dict]] = field(default_factory=dict)  # by SHA, oldest first

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

    # -- pull requests, check runs, statuses, reviews ----------------------------------------

    def add_pull(
        self,
        full_name: str,
        title: str,
        body: str | None = "",
        *,
        head_ref: str = "optio/change",
        head_sha: str | None = None,
        base_ref: str = "main",
        user: str = "optio-bot",
        draft: bool = False,
    ) -> FakePull:
        """A pull request: an issue with `pull_request` set plus its head, mergeability and reviews."""
        issue = self.add_issue(full_name, title, body, user=user, pull_request=True)
        repo = self.repos[full_name.lower()]
        with self._lock:
            pull = FakePull(
                number=issue.number,
                id=next(self._ids),
                head_sha=head_sha or _sha(f"{full_name}#{issue.number}:0"),
                head_ref=head_ref,
                base_ref=base_ref,
                draft=draft,
            )
            repo.pulls[issue.number] = pull
            repo.version += 1
            return pull

    def pull(self, full_name: str, number: int) -> FakePull:
        return self.repos[full_name.lower()].pulls[number]

    def push(self, full_name: str, number: int, sha: str | None = None) -> str:
        """New commits on the PR's branch (a `synchronize`): the head SHA moves; checks start over."""
        with self._lock:
            repo = self.repos[full_name.lower()]
            pull = repo.pulls[number]
            pull.head_sha = sha or _sha(f"{pull.head_sha}+1")
            pull.mergeable, pull.mergeable_state = None, "unknown"  # GitHub recomputes it in the background
            self._touch_pull(repo, number)
            return pull.head_sha

    def set_mergeable(self, full_name: str, number: int, mergeable: bool | None, state: str = "clean") -> None:
        with self._lock:
            repo = self.repos[full_name.lower()]
            repo.pulls[number].mergeable, repo.pulls[number].mergeable_state = mergeable, state
            self._touch_pull(repo, number)

    def merge_pull(self, full_name: str, number: int) -> None:
        with self._lock:
            repo = self.repos[full_name.lower()]
            pull, issue = repo.pulls[number], repo.issues[number]
            pull.merged, pull.merged_at = True, _now()
            pull.merge_commit_sha = _sha(f"merge:{pull.head_sha}")
            pull.mergeable, pull.mergeable_state = None, "unknown"
            issue.state, issue.closed_at = "closed", pull.merged_at
            self._touch_pull(repo, number)

    def close_pull(self, full_name: str, number: int) -> None:
        with self._lock:
            repo = self.repos[full_name.lower()]
            issue = repo.issues[number]
            issue.state, issue.closed_at = "closed", _now()
            self._touch_pull(repo, number)

    def reopen_pull(self, full_name: str, number: int) -> None:
        with self._lock:
            repo = self.repos[full_name.lower()]
            issue = repo.issues[number]
            issue.state, issue.closed_at = "open", None
            self._touch_pull(repo, number)

    def add_check_run(
        self,
        full_name: str,
        sha: str,
        name: str,
        *,
        status: str = "completed",
        conclusion: str | None = "success",
        summary: str = "",
    ) -> dict:
        """A check run on `sha`; a second run with the same name is a re-run (the latest one counts)."""
        with self._lock:
            repo = self.repos[full_name.lower()]
            now = _now()
            run = {
                "id": next(self._ids),
                "name": name,
                "head_sha": sha,
                "status": status,
                "conclusion": conclusion if status == "completed" else None,
                "started_at": now,
                "completed_at": now if status == "completed" else None,
                "summary": summary,
                "suite_id": next(self._ids),
            }
            repo.check_runs.setdefault(sha, []).append(run)
            repo.version += 1
            return run

    def add_status(self, full_name: str, sha: str, context: str, state: str, description: str = "") -> dict:
        """A commit status (`pending`, `success`, `failure`, `error`); the latest per context counts."""
        with self._lock:
            repo = self.repos[full_name.lower()]
            now = _now()
            status = {"id": next(self._ids), "context": context, "state": state, "description": description,
                      "created_at": now, "updated_at": now}  # fmt: skip
            repo.statuses.setdefault(sha, []).append(status)
            repo.version += 1
            return status

    def add_review(
        self, full_name: str, number: int, user: str, state: str, body: str = "", *, commit_id: str | None = None
    ) -> dict:
        """A submitted review: APPROVED, CHANGES_REQUESTED or COMMENTED."""
        with self._lock:
            repo = self.repos[full_name.lower()]
            pull = repo.pulls[number]
            review = {"id": next(self._ids), "user": user, "state": state, "body": body,
                      "commit_id": commit_id or pull.head_sha, "submitted_at": _now()}  # fmt: skip
            pull.reviews.append(review)
            self._touch_pull(repo, number)
            return review

    def dismiss_review(self, full_name: str, number: int, review_id: int) -> None:
        with self._lock:
            repo = self.repos[full_name.lower()]
            for review in repo.pulls[number].reviews:
                if review["id"] == review_id:
                    review["state"] = "DISMISSED"
            self._touch_pull(repo, number)

    def _touch_pull(self, repo: FakeRepo, number: int) -> None:
        issue = repo.issues[number]
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

    def _repo_json(self, repo: FakeRepo) -> dict:
        api = f"{self.url}/repos/{repo.full_name}"
        return {
            "id": repo.id,
            "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": self._user_json(repo.owner),
            "private": False,
            "html_url": f"{WEB}/{repo.full_name}",
            "url": api,
            "default_branch": "main",
        }

    def _pull_json(self, repo: FakeRepo, pull: FakePull) -> dict:
        """https://docs.github.com/en/rest/pulls/pulls#get-a-pull-request"""
        issue = repo.issues[pull.number]
        api = f"{self.url}/repos/{repo.full_name}"
        web = f"{WEB}/{repo.full_name}/pull/{pull.number}"

        def ref(name: str, sha: str) -> dict:
            return {"label": f"{repo.owner}:{name}", "ref": name, "sha": sha, "user": self._user_json(repo.owner),
                    "repo": self._repo_json(repo)}  # fmt: skip

        requested = sorted({r["user"] for r in pull.reviews if r["state"] == "DISMISSED"})
        return {
            "url": f"{api}/pulls/{pull.number}",
            "id": pull.id,
            "node_id": "MDExOlB1bGxSZXF1ZXN0MQ==",
            "html_url": web,
            "diff_url": f"{web}.diff",
            "patch_url": f"{web}.patch",
            "issue_url": f"{api}/issues/{pull.number}",
            "commits_url": f"{api}/pulls/{pull.number}/commits",
            "review_comments_url": f"{api}/pulls/{pull.number}/comments",
            "review_comment_url": f"{api}/pulls/comments{{/number}}",
            "comments_url": f"{api}/issues/{pull.number}/comments",
            "statuses_url": f"{api}/statuses/{pull.head_sha}",
            "number": pull.number,
            "state": issue.state,
            "locked": False,
            "title": issue.title,
            "user": self._user_json(issue.user),
            "body": issue.body,
            "labels": [self._label_json(repo, n) for n in issue.labels],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": _iso(issue.created_at),
            "updated_at": _iso(issue.updated_at),
            "closed_at": _iso(issue.closed_at),
            "merged_at": _iso(pull.merged_at),
            "merge_commit_sha": pull.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [self._user_json(u) for u in requested],
            "requested_teams": [],
            "head": ref(pull.head_ref, pull.head_sha),
            "base": ref(pull.base_ref, _sha(f"{repo.full_name}:{pull.base_ref}")),
            "_links": {"self": {"href": f"{api}/pulls/{pull.number}"}, "html": {"href": web}},
            "author_association": "COLLABORATOR",
            "auto_merge": None,
            "draft": pull.draft,
            "merged": pull.merged,
            "mergeable": pull.mergeable,
            "rebaseable": pull.mergeable,
            "mergeable_state": pull.mergeable_state,
            "merged_by": self._user_json("octocat") if pull.merged else None,
            "comments": len(issue.comments),
            "review_comments": 0,
            "maintainer_can_modify": True,
            "commits": 1,
            "additions": 10,
            "deletions": 2,
            "changed_files": 3,
        }

    def _review_json(self, repo: FakeRepo, pull: FakePull, review: dict) -> dict:
        """https://docs.github.com/en/rest/pulls/reviews#list-reviews-for-a-pull-request"""
        web = f"{WEB}/{repo.full_name}/pull/{pull.number}"
        return {
            "id": review["id"],
            "node_id": "MDE3OlB1bGxSZXF1ZXN0UmV2aWV3ODA=",
            "user": self._user_json(review["user"]),
            "body": review["body"],
            "state": review["state"],
            "html_url": f"{web}#pullrequestreview-{review['id']}",
            "pull_request_url": f"{self.url}/repos/{repo.full_name}/pulls/{pull.number}",
            "_links": {
                "html": {"href": f"{web}#pullrequestreview-{review['id']}"},
                "pull_request": {"href": f"{self.url}/repos/{repo.full_name}/pulls/{pull.number}"},
            },
            "submitted_at": _iso(review["submitted_at"]),
            "commit_id": review["commit_id"],
            "author_association": "COLLABORATOR",
        }

    def _check_run_json(self, repo: FakeRepo, run: dict) -> dict:
        """https://docs.github.com/en/rest/checks/runs#get-a-check-run"""
        api = f"{self.url}/repos/{repo.full_name}"
        pulls = [
            p for p in repo.pulls.values() if p.head_sha == run["head_sha"] and repo.issues[p.number].state == "open"
        ]
        return {
            "id": run["id"],
            "head_sha": run["head_sha"],
            "node_id": "MDg6Q2hlY2tSdW40",
            "external_id": "",
            "url": f"{api}/check-runs/{run['id']}",
            "html_url": f"{WEB}/{repo.full_name}/runs/{run['id']}",
            "details_url": f"https://ci.example.com/runs/{run['id']}",
            "status": run["status"],
            "conclusion": run["conclusion"],
            "started_at": _iso(run["started_at"]),
            "completed_at": _iso(run["completed_at"]),
            "output": {
                "title": run["name"],
                "summary": run["summary"],
                "text": "",
                "annotations_count": 0,
                "annotations_url": f"{api}/check-runs/{run['id']}/annotations",
            },
            "name": run["name"],
            "check_suite": {"id": run["suite_id"]},
            "app": {"id": 1, "slug": "ci", "name": "CI", "owner": self._user_json(repo.owner)},
            "pull_requests": [
                {
                    "url": f"{api}/pulls/{p.number}",
                    "id": p.id,
                    "number": p.number,
                    "head": {"ref": p.head_ref, "sha": p.head_sha},
                    "base": {"ref": p.base_ref, "sha": ""},
                }
                for p in pulls
            ],
        }

    def _status_json(self, repo: FakeRepo, status: dict) -> dict:
        return {
            "url": f"{self.url}/repos/{repo.full_name}/statuses/{status['id']}",
            "avatar_url": f"{WEB}/images/error/ci_happy.gif",
            "id": status["id"],
            "node_id": "MDY6U3RhdHVzMQ==",
            "state": status["state"],
            "description": status["description"],
            "target_url": f"https://ci.example.com/status/{status['id']}",
            "context": status["context"],
            "created_at": _iso(status["created_at"]),
            "updated_at": _iso(status["updated_at"]),
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
        if len(segs) >= 5 and segs[0] == "repos" and segs[3] in ("pulls", "commits"):
            return self._route_pulls(method, segs, query)
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

    def _route_pulls(self, method: str, segs: list[str], query: dict) -> tuple[int, bytes, dict]:
        fake = self.fake
        repo = fake.repos.get(f"{segs[1]}/{segs[2]}".lower())
        if repo is None or method != "GET":
            raise _HttpError(404, "Not Found")
        kind, ident, tail = segs[3], segs[4], segs[5:]
        if kind == "pulls":
            with fake._lock:
                pull = repo.pulls.get(int(ident)) if ident.isdigit() else None
            if pull is None:
                raise _HttpError(404, "Not Found")
            if tail == []:
                with fake._lock:
                    return self._json(200, fake._pull_json(repo, pull), etag=True)
            if tail == ["reviews"]:
                path = f"/repos/{repo.full_name}/pulls/{pull.number}/reviews"
                items = lambda: [fake._review_json(repo, pull, r) for r in pull.reviews]  # noqa: E731
                return self._page(items, query, path, ("reviews", repo.id, repo.version, pull.number))
            raise _HttpError(404, "Not Found")
        sha = self._resolve_ref(repo, ident)
        if tail == ["check-runs"]:
            return self._check_runs(repo, sha, query)
        if tail == ["status"]:
            return self._combined_status(repo, sha, ident)
        raise _HttpError(404, "Not Found")

    def _resolve_ref(self, repo: FakeRepo, ref: str) -> str:
        """A commit SHA as it is, or a branch name resolved to the head of the open PR on it."""
        with self.fake._lock:
            for pull in repo.pulls.values():
                if pull.head_ref == ref:
                    return pull.head_sha
        return ref

    def _check_runs(self, repo: FakeRepo, sha: str, query: dict) -> tuple[int, bytes, dict]:
        """https://docs.github.com/en/rest/checks/runs#list-check-runs-for-a-git-reference"""
        fake = self.fake
        which = query.get("filter", "latest")
        if which not in ("latest", "all"):
            raise _HttpError(422, "Validation Failed", errors=[{"field": "filter", "code": "invalid"}])
        try:
            per_page = min(100, max(1, int(query.get("per_page", 30))))
            page = max(1, int(query.get("page", 1)))
        except ValueError:
            raise _HttpError(422, "Validation Failed") from None
        with fake._lock:
            runs = list(repo.check_runs.get(sha, []))
            if which == "latest":
                latest: dict[str, dict] = {}
                for run in runs:
                    latest[run["name"]] = run
                runs = list(latest.values())
            if name := query.get("check_name"):
                runs = [r for r in runs if r["name"] == name]
            if status := query.get("status"):
                runs = [r for r in runs if r["status"] == status]
            runs.sort(key=lambda r: r["id"], reverse=True)
            chunk = runs[(page - 1) * per_page : page * per_page]
            body = {"total_count": len(runs), "check_runs": [fake._check_run_json(repo, r) for r in chunk]}
        return self._json(200, body, etag=True)

    def _combined_status(self, repo: FakeRepo, sha: str, ref: str) -> tuple[int, bytes, dict]:
        """https://docs.github.com/en/rest/commits/statuses#get-the-combined-status-for-a-specific-reference"""
        fake = self.fake
        with fake._lock:
            latest: dict[str, dict] = {}
            for status in repo.statuses.get(sha, []):
                latest[status["context"]] = status
            statuses = sorted(latest.values(), key=lambda s: s["id"], reverse=True)
            states = {s["state"] for s in statuses}
            # GitHub: failure if any context is error or failure; pending if none are set or any is pending.
            if states & {"error", "failure"}:
                combined = "failure"
            elif not statuses or "pending" in states:
                combined = "pending"
            else:
                combined = "success"
            body = {
                "state": combined,
                "statuses": [fake._status_json(repo, s) for s in statuses],
                "sha": sha,
                "total_count": len(statuses),
                "repository": fake._repo_json(repo),
                "commit_url": f"{fake.url}/repos/{repo.full_name}/commits/{sha}",
                "url": f"{fake.url}/repos/{repo.full_name}/commits/{ref}/status",
            }
        return self._json(200, body, etag=True)


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
