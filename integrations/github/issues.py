"""Reading issues across every connected repository (the selector behind /api/issues and /issues/).

One listing per repository is fetched from GitHub (state only), concurrently on a bounded
pool; label, assignee and text filters are applied here, so changing a filter costs only
revalidations (304s) and the filter menus can offer every label and assignee there is.
Worker threads make HTTP requests only: tokens and cached ETags are read before, and new
cache rows written after, on the calling thread.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cached_property

import msgspec
from django.db.models import Q

from integrations.github import client, etags
from optio import secrets
from optio.models import ACTIVE_STATES, Repo, Secret, Task

log = logging.getLogger(__name__)

TICKET_SOURCE = "github"
STATES = ("open", "closed", "all")
# Repositories fetched at once, across all requests in this process. GitHub asks clients not
# to make many concurrent requests (secondary limits); 20 covers a typical install in one round.
MAX_CONCURRENCY = 20
# A repository still being read after this long is reported as failed, so one slow
# repository (many pages, a GitHub hiccup) cannot hold the whole page hostage.
FETCH_DEADLINE = 20.0

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=MAX_CONCURRENCY, thread_name_prefix="github-issues")
        return _executor


@dataclass
class Filters:
    state: str = "open"
    labels: list[str] = field(default_factory=list)  # every one must be on the issue (as on GitHub)
    assignee: str = ""  # a login, "none" or "*"
    q: str = ""

    @property
    def active(self) -> bool:
        return bool(self.labels or self.assignee or self.q)

    def matches(self, item: dict) -> bool:
        if self.labels:
            have = {name.lower() for name in item["labels"]}
            if not all(label.lower() in have for label in self.labels):
                return False
        if self.assignee:
            logins = {a.lower() for a in item["assignees"]}
            if self.assignee == "none":
                if logins:
                    return False
            elif self.assignee == "*":
                if not logins:
                    return False
            elif self.assignee.lower() not in logins:
                return False
        return not (self.q and self.q.lower() not in item["title"].lower())


@dataclass
class RepoError:
    repo: Repo
    reason: str
    kind: str

    def as_json(self) -> dict:
        return {"repo": repo_json(self.repo), "reason": self.reason, "kind": self.kind}


@dataclass
class Feed:
    items: list[dict]  # newest first; filters applied. Shared with a cache: copy before changing one.
    errors: list[RepoError]
    repos: list[Repo]
    everything: list[dict] = field(default_factory=list, repr=False)  # before filters
    missing_token: bool = False  # no repository has a GITHUB_TOKEN to use

    @cached_property
    def labels(self) -> list[str]:
        """Every label on the fetched issues, for filter menus."""
        return sorted({name for item in self.everything for name in item["labels"]}, key=str.lower)

    @cached_property
    def assignees(self) -> list[str]:
        return sorted({login for item in self.everything for login in item["assignees"]}, key=str.lower)


class _Summaries:
    """Summaries of a listing per (repository, page ETags): a warm request re-uses them whole."""

    def __init__(self, max_entries: int = 512):
        self.max_entries = max_entries
        self._items: OrderedDict[tuple, list[dict]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> list[dict] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple, items: list[dict]) -> None:
        with self._lock:
            self._items[key] = items
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


summaries = _Summaries()


class _Login(msgspec.Struct, gc=False):
    login: str


class _Label(msgspec.Struct, gc=False):
    name: str


class IssueRow(msgspec.Struct, gc=False):
    """The fields of a listed issue this view reads; msgspec skips the rest of GitHub's object
    without building it. gc=False: thousands of these stay memoised, and untracked objects
    keep the garbage collector's full passes short (orjson's dict trees made them 50-75 ms)."""

    id: int
    number: int
    title: str
    html_url: str
    state: str
    created_at: str
    updated_at: str
    body: str | None = None
    comments: int = 0
    labels: tuple[str | _Label, ...] = ()
    user: _Login | None = None
    assignee: _Login | None = None
    assignees: tuple[_Login | None, ...] = ()
    pull_request: msgspec.Raw = msgspec.Raw()  # present on pull requests, which are left out

    @property
    def is_pull_request(self) -> bool:
        return bytes(self.pull_request) not in (b"", b"null")


ROWS = etags.Shape("issue-rows", msgspec.json.Decoder(list[IssueRow]).decode)


def repo_json(repo: Repo) -> dict:
    return {"id": repo.pk, "fullName": repo.full_name, "repoUrl": repo.url}


def tokens_for(repos: list[Repo]) -> dict[int, str]:
    """GITHUB_TOKEN per repository (its own first, then the global one), in one query.
    The same precedence as optio.secrets.get_value, without a query per repository."""
    rows = Secret.objects.filter(name=client.TOKEN_SECRET).filter(
        Q(repo__isnull=True) | Q(repo__in=[r.pk for r in repos])
    )
    scoped, global_value = {}, None
    for secret in rows:
        if secret.repo_id is None:
            global_value = secrets.reveal(secret)
        else:
            scoped[secret.repo_id] = secrets.reveal(secret)
    return {r.pk: scoped.get(r.pk) or global_value for r in repos if scoped.get(r.pk) or global_value}


def fetch(repos: list[Repo], filters: Filters) -> Feed:
    """Issues of `repos` that match `filters`; a repository that fails lands in `errors`."""
    tokens = tokens_for(repos)
    errors: list[RepoError] = []
    plan = []
    for repo in repos:
        token = tokens.get(repo.pk)
        if token is None:
            errors.append(RepoError(repo, _missing_token(repo), "missing_token"))
        else:
            plan.append((repo, token))
    params = {"state": filters.state, "per_page": client.PER_PAGE}
    store = etags.PreloadedStore(
        [client.listing_scope(token, f"/repos/{repo.owner}/{repo.name}/issues", params) for repo, token in plan],
        ROWS,
    )

    def one(repo: Repo, token: str) -> tuple[list[dict], RepoError | None]:
        try:
            listing = client.list_issues(repo, state=filters.state, token=token, store=store, shape=ROWS)
        except client.GitHubError as exc:
            return [], RepoError(repo, str(exc), exc.kind), None
        except Exception as exc:  # one repository's surprise must not hide the others
            log.exception("Listing issues of %s failed", repo.full_name)
            error = RepoError(repo, f"Listing issues of {repo.full_name} failed unexpectedly ({exc}).", "error")
            return [], error, None
        key = (repo.pk, repo.url, *listing.etags) if all(listing.etags) else None
        items = summaries.get(key) if key else None
        if items is None:
            shared = repo_json(repo)
            items = [row_summary(shared, row) for row in listing]
            if key:
                summaries.put(key, items)
        note = None
        if listing.truncated:
            note = RepoError(
                repo,
                f"Only the first {len(listing)} issues of {repo.full_name} are listed: Optio reads up to "
                f"{client.MAX_PAGES} pages of {client.PER_PAGE} issues per repository.",
                "truncated",
            )
        return items, note, key

    futures = [(repo, pool().submit(one, repo, token)) for repo, token in plan]
    wait([future for _, future in futures], timeout=FETCH_DEADLINE)
    parts: list[list[dict]] = []
    keys: list[tuple | None] = []
    for repo, future in futures:
        if not future.done():
            future.cancel()  # queued behind other requests: drop it; running: its result is ignored
            reason = f"GitHub did not finish answering for {repo.full_name} within {FETCH_DEADLINE:g} s."
            errors.append(RepoError(repo, reason, "timeout"))
            keys.append(None)
            continue
        items, error, key = future.result()
        parts.append(items)
        keys.append(key)
        if error:
            errors.append(error)
    store.flush()

    everything = _merged(parts, keys)
    # `everything` is newest first, and filtering keeps that order.
    matching = [item for item in everything if filters.matches(item)] if filters.active else list(everything)
    return Feed(
        items=matching, errors=errors, repos=repos, everything=everything, missing_token=bool(repos) and not plan
    )


def _merged(parts: list[list[dict]], keys: list[tuple | None]) -> list[dict]:
    """Every repository's summaries in one list, newest first. The same listings (same ETags)
    give the same list, so a warm request re-uses the sorted list whole (treat it as read-only)."""
    key = ("merged", *keys) if keys and all(keys) else None
    found = summaries.get(key) if key else None
    if found is None:
        found = [item for part in parts for item in part]
        found.sort(key=lambda i: (i["createdAt"], i["repo"]["fullName"], i["number"]), reverse=True)
        if key:
            summaries.put(key, found)
    return found


def _missing_token(repo: Repo) -> str:
    return f"No GITHUB_TOKEN secret is set for {repo.full_name} or globally. {client.WHERE_TO_SET_TOKEN}"


def summary(repo: Repo, issue: dict) -> dict:
    """The camelCase shape of one issue in /api/issues (and the Issues view's rows)."""
    assignees = [a["login"] for a in issue.get("assignees") or [] if a]
    if not assignees and issue.get("assignee"):
        assignees = [issue["assignee"]["login"]]
    return {
        "id": issue["id"],
        "number": issue["number"],
        "title": issue["title"],
        "body": issue.get("body") or "",
        "url": issue["html_url"],
        "labels": [label["name"] if isinstance(label, dict) else label for label in issue.get("labels") or []],
        "state": issue["state"],
        "author": (issue.get("user") or {}).get("login"),
        "assignee": assignees[0] if assignees else None,
        "assignees": assignees,
        "comments": issue.get("comments", 0),
        "repo": repo_json(repo),
        "createdAt": issue["created_at"],
        "updatedAt": issue["updated_at"],
    }


def row_summary(repo: dict, row: IssueRow) -> dict:
    """`summary` for an IssueRow from a listing; `repo` is repo_json(), shared by its issues."""
    assignees = [a.login for a in row.assignees if a]
    if not assignees and row.assignee:
        assignees = [row.assignee.login]
    return {
        "id": row.id,
        "number": row.number,
        "title": row.title,
        "body": row.body or "",
        "url": row.html_url,
        "labels": [label if isinstance(label, str) else label.name for label in row.labels],
        "state": row.state,
        "author": row.user.login if row.user else None,
        "assignee": assignees[0] if assignees else None,
        "assignees": assignees,
        "comments": row.comments,
        "repo": repo,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
    }


def attach_tasks(items: list[dict]) -> list[dict]:
    """Copies of `items` with `optioTask`: the active task, else the latest one, else None.
    Called on one page of results, so the lookup stays one small query."""
    items = [dict(item) for item in items]  # the originals are shared with the summary cache
    if not items:
        return items
    wanted = sorted({(i["repo"]["id"], str(i["number"])) for i in items})
    rows = []
    for start in range(0, len(wanted), 500):  # bounded IN lists, whatever the page size
        chunk = wanted[start : start + 500]
        rows += (
            Task.objects.filter(
                ticket_source=TICKET_SOURCE,
                repo_id__in={repo_id for repo_id, _ in chunk},
                ticket_external_id__in={number for _, number in chunk},
            )
            .order_by("created_at")
            .values_list("repo_id", "ticket_external_id", "id", "state")
        )
    found: dict[tuple[int, str], dict] = {}
    for repo_id, number, task_id, state in rows:
        key = (repo_id, number)
        current = found.get(key)
        # A later task replaces an earlier one unless the earlier one is still active.
        if current is None or current["state"] not in ACTIVE_STATES or state in ACTIVE_STATES:
            found[key] = {"taskId": str(task_id), "state": state}
    for item in items:
        item["optioTask"] = found.get((item["repo"]["id"], str(item["number"])))
    return items
