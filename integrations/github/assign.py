"""Turning a GitHub issue into an Optio task: POST /api/issues/assign and the Issues view's button."""

from __future__ import annotations

import logging
import re
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction

from integrations.github import client, etags, issues
from optio import lifecycle
from optio.models import ACTIVE_STATES, Repo, Task
from optio.repo_urls import InvalidRepoUrl, normalize_repo_url

log = logging.getLogger(__name__)

_ISSUE_PATH = re.compile(r"^/(?P<owner>[^/]+)/(?P<name>[^/]+)/(?P<kind>issues|pull|pulls)/(?P<number>\d+)/?$")
# Assign all: how many issues one click turns into tasks (the rest wait for the next click).
MAX_ASSIGN_ALL = 100


class AssignError(Exception):
    """Refused for a reason the person can fix; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, details: dict | None = None):
        super().__init__(message)
        self.message, self.status, self.details = message, status, details or {}


@dataclass(frozen=True)
class IssueRef:
    repo_url: str  # normalised, like Repo.url
    number: int


@dataclass
class Assignment:
    task: Task
    created: bool
    issue: dict


def parse_issue_url(url: str) -> IssueRef:
    """`https://github.com/acme/webapp/issues/42` → (https://github.com/acme/webapp, 42)."""
    example = "https://github.com/owner/name/issues/42"
    if not isinstance(url, str) or not url.strip():
        raise AssignError(f"issueUrl is required, like {example}.", details={"issueUrl": ["required"]})
    parts = urlsplit(url.strip())
    match = _ISSUE_PATH.match(parts.path)
    if parts.scheme not in ("http", "https") or not parts.netloc or not match:
        raise AssignError(f"{url!r} is not a GitHub issue URL; expected {example}.", details={"issueUrl": ["invalid"]})
    if match["kind"] != "issues":
        raise AssignError(
            f"{url} is a pull request; Optio turns issues into tasks, not pull requests.",
            details={"issueUrl": ["pull request"]},
        )
    try:
        repo_url = normalize_repo_url(f"https://{parts.netloc}/{match['owner']}/{match['name']}")
    except InvalidRepoUrl as exc:
        raise AssignError(str(exc), details={"issueUrl": [str(exc)]}) from None
    return IssueRef(repo_url, int(match["number"]))


def active_task(repo: Repo, number: int) -> Task | None:
    return (
        Task.objects.select_related("repo")
        .filter(repo=repo, ticket_source=issues.TICKET_SOURCE, ticket_external_id=str(number), state__in=ACTIVE_STATES)
        .first()
    )


def build_prompt(issue: dict, comments: list[dict]) -> str:
    """Title, body and a comments section: everything the agent should read, in reading order."""
    lines = [f"# {issue['title']}", "", (issue.get("body") or "").strip() or "(The issue has no description.)", ""]
    lines += [f"GitHub issue: {issue['html_url']}", "", "## Comments", ""]
    if not comments:
        lines.append("(No comments.)")
    for comment in comments:
        author = (comment.get("user") or {}).get("login", "someone")
        lines += [f"### {author} at {comment.get('created_at', '')}", "", (comment.get("body") or "").strip(), ""]
    return "\n".join(lines).rstrip() + "\n"


def fetch_issue(repo: Repo, number: int, *, token: str | None = None, store=None) -> tuple[dict, list[dict]]:
    """The issue and its comments, checked to be an open issue of `repo` (GitHub calls only)."""
    try:
        issue = client.get_issue(repo, number, token=token, store=store)
    except client.NotFound:
        raise AssignError(
            f"{repo.full_name} has no issue #{number}, or the GITHUB_TOKEN cannot see it.",
            status=404,
            details={"issueNumber": [number]},
        ) from None
    if "pull_request" in issue:
        raise AssignError(f"#{number} in {repo.full_name} is a pull request; Optio turns issues into tasks.")
    # A transferred issue is answered from its new home; the URL tells which repository that is.
    expected = f"/{repo.full_name}/issues/{number}".lower()
    if not urlsplit(issue.get("html_url", "")).path.lower().endswith(expected):
        raise AssignError(
            f"Issue #{number} does not belong to {repo.full_name} (GitHub says it is {issue.get('html_url')}).",
            details={"issueUrl": ["another repository"]},
        )
    if issue.get("state") != "open":
        raise AssignError(
            f"Issue #{number} in {repo.full_name} is closed; reopen it on GitHub to assign it.", status=409
        )
    comments = list(client.list_issue_comments(repo, number, token=token, store=store)) if issue.get("comments") else []
    return issue, comments


def assign(repo: Repo, number: int, *, user=None) -> Assignment:
    """Create (and queue) the task for issue `number` of `repo`, or return its active task.

    Two concurrent calls make one task: the database constraint `task_one_active_per_ticket`
    refuses the second insert, which then returns the winner's task.
    """
    issue, comments = fetch_issue(repo, number)
    return create_from_issue(repo, issue, comments, user=user)


def create_from_issue(repo: Repo, issue: dict, comments: list[dict], *, user=None) -> Assignment:
    number = int(issue["number"])
    existing = active_task(repo, number)
    if existing:
        return Assignment(existing, False, issue)
    try:
        with transaction.atomic():  # a savepoint: the IntegrityError must not spoil an outer transaction
            task = lifecycle.create_task(
                repo,
                issue["title"],
                build_prompt(issue, comments),
                created_by=user,
                ticket_source=issues.TICKET_SOURCE,
                ticket_external_id=str(number),
                ticket_url=issue["html_url"],
            )
    except IntegrityError:
        existing = active_task(repo, number)
        if existing is None:  # not the one-active-task constraint after all
            raise
        return Assignment(existing, False, issue)
    if repo.writeback_enabled:
        from integrations.github.tasks import write_back_assignment

        transaction.on_commit(partial(write_back_assignment.delay, str(task.pk)))
    return Assignment(task, True, issue)


@dataclass
class BulkResult:
    created: list[Assignment]
    existing: list[Assignment]
    failed: list[tuple[dict, str]]  # (issue summary, reason)
    remaining: int  # issues left for another click


def assign_many(items: list[dict], *, user=None) -> BulkResult:
    """Assign every issue in `items` (summaries from issues.fetch) that has no active task.

    GitHub reads (issue + comments) run on the bounded pool; tasks are created here, one by one.
    """
    todo = [i for i in items if not (i.get("optioTask") and i["optioTask"]["state"] in ACTIVE_STATES)]
    todo, remaining = todo[:MAX_ASSIGN_ALL], max(0, len(todo) - MAX_ASSIGN_ALL)
    repos = {r.pk: r for r in Repo.objects.filter(pk__in={i["repo"]["id"] for i in todo})}
    tokens = issues.tokens_for(list(repos.values()))
    result = BulkResult([], [], [], remaining)
    store = etags.PreloadedStore([])  # worker threads must not touch the database
    futures: list[tuple[dict, Future | None]] = []
    for item in todo:
        repo = repos.get(item["repo"]["id"])
        token = tokens.get(repo.pk) if repo else None
        if repo is None or token is None:
            reason = "the repository is no longer connected" if repo is None else "no GITHUB_TOKEN secret is set"
            result.failed.append((item, reason))
            continue
        futures.append((item, issues.pool().submit(fetch_issue, repo, item["number"], token=token, store=store)))
    for item, future in futures:
        try:
            issue, comments = future.result()
            assignment = create_from_issue(repos[item["repo"]["id"]], issue, comments, user=user)
        except (AssignError, client.GitHubError) as exc:
            result.failed.append((item, str(exc)))
            continue
        (result.created if assignment.created else result.existing).append(assignment)
    store.flush()
    return result
