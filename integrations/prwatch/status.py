"""What a pull request's state means for its task: pure functions, no I/O.

`summarise()` turns GitHub's answers (the PR, its head commit's check runs and combined
status, its reviews) into the `prStatus` object the API shows; `verdict` in it is what the
transition rules read; `fingerprint()` is the part that makes two observations "the same".
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from optio.models import TaskState
from optio.repo_urls import InvalidRepoUrl, normalize_repo_url

WATCHED_STATES = (TaskState.PR_OPENED, TaskState.NEEDS_ATTENTION)
# Reasons the watcher itself gives; only these does it take back when the PR recovers.
CI_FAILED = "ci_failed"
CHANGES_REQUESTED = "changes_requested"
WATCHER_REASONS = (CI_FAILED, CHANGES_REQUESTED)
CLOSED_UNMERGED = "PR closed without merging"

# https://docs.github.com/en/rest/checks/runs — conclusions of a completed run.
FAILING_CONCLUSIONS = {"failure", "timed_out", "cancelled", "action_required", "startup_failure"}
PASSING_CONCLUSIONS = {"success", "neutral", "skipped"}
# Review states that decide (COMMENTED and PENDING do not); a dismissed review no longer counts.
DECISIVE_REVIEWS = {"APPROVED", "CHANGES_REQUESTED", "DISMISSED"}
MAX_REVIEW_TEXT = 2000

_PULL_PATH = re.compile(r"^/(?P<owner>[^/]+)/(?P<name>[^/]+)/pulls?/(?P<number>\d+)(?:/.*)?$")


@dataclass(frozen=True)
class PullRef:
    repo_url: str  # normalised https://host/owner/name
    number: int


def parse_pull_url(url: str) -> PullRef | None:
    """`https://github.com/acme/webapp/pull/42` (also `/pull/42/files`), or None if it is not a PR URL."""
    parts = urlsplit((url or "").strip())
    match = _PULL_PATH.match(parts.path)
    if parts.scheme not in ("http", "https") or not parts.netloc or not match:
        return None
    try:
        repo_url = normalize_repo_url(f"https://{parts.netloc}/{match['owner']}/{match['name']}")
    except InvalidRepoUrl:
        return None
    return PullRef(repo_url, int(match["number"]))


def own_pull(pr_url: str, repo_url: str) -> PullRef | None:
    """The PR of `pr_url` if it belongs to the task's own repository; a PR elsewhere is not ours to act on."""
    ref = parse_pull_url(pr_url)
    return ref if ref is not None and ref.repo_url == repo_url else None


def summarise_checks(check_runs: list[dict], combined: dict) -> dict:
    failing: set[str] = set()
    pending: set[str] = set()
    passing: set[str] = set()
    for run in check_runs:
        name = str(run.get("name") or run.get("id"))
        conclusion = run.get("conclusion")
        if run.get("status") != "completed":
            pending.add(name)
        elif conclusion in FAILING_CONCLUSIONS:
            failing.add(name)
        elif conclusion in PASSING_CONCLUSIONS:
            passing.add(name)
        else:  # "stale" and anything new: not known to pass yet
            pending.add(name)
    for status in combined.get("statuses") or []:
        name = str(status.get("context") or status.get("id"))
        state = status.get("state")
        if state in ("failure", "error"):
            failing.add(name)
        elif state == "success":
            passing.add(name)
        else:
            pending.add(name)
    if failing:
        state = "failure"
    elif pending:
        state = "pending"
    else:
        state = "success" if passing else "none"
    return {
        "state": state,
        "total": len(failing | pending | passing),
        "failing": sorted(failing),
        "pending": sorted(pending - failing),
        "passing": sorted(passing - failing - pending),
    }


def summarise_reviews(reviews: list[dict]) -> dict:
    """GitHub's review decision, from each reviewer's latest decisive review.

    A change request stays outstanding until the same reviewer approves or it is dismissed,
    which is how GitHub computes `reviewDecision` (an approval by someone else does not lift it).
    """
    latest: dict[str, dict] = {}
    for review in sorted(reviews, key=lambda r: (r.get("submitted_at") or "", r.get("id") or 0)):
        state = str(review.get("state") or "").upper()
        login = ((review.get("user") or {}).get("login")) or str(review.get("id"))
        if state in DECISIVE_REVIEWS:
            latest[login] = dict(review, state=state)
    requests = [r for r in latest.values() if r["state"] == "CHANGES_REQUESTED"]
    approvals = [r for r in latest.values() if r["state"] == "APPROVED"]
    decision = CHANGES_REQUESTED if requests else ("approved" if approvals else None)
    out: dict = {
        "reviewDecision": decision,
        "changesRequestedBy": sorted((r.get("user") or {}).get("login", "") for r in requests),
        "approvedBy": sorted((r.get("user") or {}).get("login", "") for r in approvals),
        "changeRequestIds": sorted(int(r.get("id") or 0) for r in requests),
    }
    if requests:
        newest = max(requests, key=lambda r: (r.get("submitted_at") or "", r.get("id") or 0))
        out["reviewText"] = (newest.get("body") or "")[:MAX_REVIEW_TEXT]
        out["reviewUrl"] = newest.get("html_url")
    return out


def summarise(pull: dict, check_runs: list[dict], combined: dict, reviews: list[dict], *, observed_at: str) -> dict:
    """The `prStatus` of a task: what the PR looked like at `observed_at`, plus the `verdict`."""
    merged = bool(pull.get("merged") or pull.get("merged_at"))
    state = "merged" if merged else str(pull.get("state") or "open")
    checks = summarise_checks(check_runs, combined)
    status = {
        "number": pull.get("number"),
        "url": pull.get("html_url"),
        "state": state,
        "merged": merged,
        "draft": bool(pull.get("draft")),
        "headSha": (pull.get("head") or {}).get("sha"),
        "mergeable": pull.get("mergeable"),
        "mergeableState": pull.get("mergeable_state"),
        "checks": checks,
        **summarise_reviews(reviews),
        "observedAt": observed_at,
    }
    status["verdict"] = verdict(status)
    return status


def verdict(status: dict) -> str:
    """merged, closed, ci_failed, changes_requested, passing or pending — in that order of precedence."""
    if status["state"] == "merged":
        return "merged"
    if status["state"] == "closed":
        return "closed"
    if status["checks"]["state"] == "failure":
        return CI_FAILED
    if status["reviewDecision"] == CHANGES_REQUESTED:
        return CHANGES_REQUESTED
    if status["checks"]["state"] in ("success", "none"):
        return "passing"
    return "pending"


def fingerprint(status: dict) -> str:
    """What the rules read, hashed: mergeability or a new passing check alone is not a new observation."""
    key = [status["verdict"], status.get("headSha")]
    if status["verdict"] == CI_FAILED:
        key.append(status["checks"]["failing"])
    if status["verdict"] in (CI_FAILED, CHANGES_REQUESTED, "passing"):
        key.append(status.get("changeRequestIds") or [])
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Decision:
    to: str | None  # None: stay where it is
    changes: dict
    message: str  # the line written to the task's log


def decide(status: dict, task_state: str, attention_reason: str) -> Decision:
    """The transition an observation calls for, given where the task is now."""
    v = status["verdict"]
    url = status.get("url") or "the pull request"
    sha = (status.get("headSha") or "")[:7]
    if v == "merged":
        return Decision(TaskState.COMPLETED, {"error": ""}, f"{url} was merged; the task is complete.")
    if v == "closed":
        return Decision(TaskState.FAILED, {"error": CLOSED_UNMERGED}, f"{url} was closed without merging.")
    if v in (CI_FAILED, CHANGES_REQUESTED):
        detail = attention_detail(status)
        if task_state == TaskState.PR_OPENED:
            return Decision(TaskState.NEEDS_ATTENTION, {"attention_reason": v, "error": detail}, detail)
        return Decision(None, {"attention_reason": v, "error": detail}, detail)
    if v == "passing" and task_state == TaskState.NEEDS_ATTENTION and attention_reason in WATCHER_REASONS:
        return Decision(
            TaskState.PR_OPENED, {"error": ""}, f"Checks pass on {sha} and no change request is outstanding."
        )
    return Decision(None, {}, "")


def attention_detail(status: dict) -> str:
    if status["verdict"] == CI_FAILED:
        failing = status["checks"]["failing"]
        return f"CI failed on {(status.get('headSha') or '')[:7]}: {', '.join(failing)}"
    who = ", ".join(status.get("changesRequestedBy") or []) or "a reviewer"
    text = (status.get("reviewText") or "").strip()
    return f"Changes requested by {who}" + (f": {text}" if text else "")
