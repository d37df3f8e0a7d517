"""The PR watcher: look at a task's pull request on GitHub and move the task to match.

`check_task(id)` is the one entry point; the beat poller (`due_task_ids`) and inbound hooks
both call it. Edge-triggered: the fingerprint of the last observation is stored on
`PullWatch`, and an observation with the same fingerprint changes nothing, so a task a
person moved by hand is not pushed back by a PR that has not changed since.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from integrations.github import client
from integrations.prwatch import github_pulls
from integrations.prwatch.models import PullWatch
from integrations.prwatch.status import WATCHED_STATES, WATCHER_REASONS, decide, fingerprint, own_pull, summarise
from optio import lifecycle, logs
from optio.models import Task, TaskState

log = logging.getLogger(__name__)

# After a rate limit without a reset time, leave the task alone this long.
RATE_LIMIT_PAUSE = timedelta(minutes=1)


@dataclass
class CheckResult:
    outcome: str  # ignored, unchanged, observed, transitioned, lost_race, stale, error
    to: str | None = None
    detail: str = ""


def due_task_ids() -> list[str]:
    """Tasks to check now: in pr_opened or needs_attention, with a PR in their own repository."""
    now = timezone.now()
    rows = (
        Task.objects.filter(state__in=WATCHED_STATES)
        .exclude(pr_url="")
        .exclude(pull_watch__next_check_after__gt=now)
        .values_list("pk", "pr_url", "repo__url")
    )
    return [str(pk) for pk, pr_url, repo_url in rows if own_pull(pr_url, repo_url) is not None]


def check_task(task_id, *, source: str = "poll") -> CheckResult:
    task = Task.objects.select_related("repo").filter(pk=task_id).first()
    if task is None or task.state not in WATCHED_STATES:
        return CheckResult("ignored", detail="not waiting on a pull request")
    ref = own_pull(task.pr_url, task.repo.url)
    if ref is None:
        return CheckResult("ignored", detail=f"{task.pr_url or 'no prUrl'} is not a PR of {task.repo.full_name}")

    started = timezone.now()
    try:
        status = observe(task, ref.number, observed_at=started)
    except client.GitHubError as exc:
        _record_error(task, exc)
        return CheckResult("error", detail=str(exc))
    return _apply(task, status, started, source)


def observe(task: Task, number: int, *, observed_at) -> dict:
    """Ask GitHub (conditionally: unchanged answers are 304s) and summarise what it says."""
    repo = task.repo
    token = client.token_for(repo)
    pull = github_pulls.get_pull(repo, number, token=token)
    sha = (pull.get("head") or {}).get("sha") or ""
    check_runs = github_pulls.list_check_runs(repo, sha, token=token) if sha else []
    combined = github_pulls.get_combined_status(repo, sha, token=token) if sha else {}
    reviews = github_pulls.list_reviews(repo, number, token=token)
    return summarise(pull, check_runs, combined, reviews, observed_at=observed_at.isoformat().replace("+00:00", "Z"))


def _apply(task: Task, status: dict, started, source: str) -> CheckResult:
    new_print = fingerprint(status)
    asked_about = task.pr_url
    with transaction.atomic():
        # The watch row lock serialises the poller and hooks checking the same task.
        watch, _ = PullWatch.objects.select_for_update().get_or_create(task=task, defaults={"pr_url": asked_about})
        task = Task.objects.select_related("repo").get(pk=task.pk)  # the state as of now, under the lock
        if task.pr_url != asked_about:
            return CheckResult("stale", detail="the task's prUrl changed while GitHub was asked")
        if watch.pr_url != task.pr_url:  # a new PR: what was seen of the old one says nothing
            watch.pr_url, watch.fingerprint, watch.verdict, watch.observed_at = task.pr_url, "", "", None
        if watch.observed_at and started < watch.observed_at:
            return CheckResult("stale", detail="a newer observation was stored while this one was fetched")
        changed = watch.fingerprint != new_print
        watch.fingerprint, watch.verdict = new_print, status["verdict"]
        watch.observed_at = started
        watch.checked_at = timezone.now()
        watch.next_check_after = None
        watch.last_error, watch.last_error_at = "", None
        watch.save()

        if not changed:
            _store_status(task, status)
            return CheckResult("unchanged")
        decision = decide(status, task.state, task.attention_reason)
        if decision.to is None or task.state not in WATCHED_STATES:
            _store_status(task, status, decision.changes if task.attention_reason in WATCHER_REASONS else None)
            return CheckResult("observed", detail=status["verdict"])
        try:
            lifecycle.transition(task, decision.to, pr_status=status, **decision.changes)
        except (lifecycle.TransitionConflict, lifecycle.InvalidTransition) as exc:
            # Someone else moved the task first (a person, the runner, the other of hook and poller).
            log.info("PR watcher lost a race on task %s: %s", task.pk, exc)
            _store_status(task, status)
            return CheckResult("lost_race", detail=str(exc))
        logs.log(task, decision.message, type="prwatch", source=source, verdict=status["verdict"], to=decision.to)
        return CheckResult("transitioned", to=decision.to, detail=decision.message)


def _store_status(task: Task, status: dict, attention: dict | None = None) -> None:
    """Refresh prStatus (and, while the watcher's own reason holds, the reason and its detail)."""
    fields: dict = {}
    if _without_time(task.pr_status) != _without_time(status):
        fields["pr_status"] = status
    current = (task.attention_reason, task.error)
    if (
        attention
        and task.state == TaskState.NEEDS_ATTENTION
        and current != (attention["attention_reason"], attention["error"])
    ):
        fields.update(attention)
    if fields:
        # A conditional update, never save(): the state may be changing concurrently and must not be overwritten.
        Task.objects.filter(pk=task.pk, state=task.state).update(**fields)


def _without_time(status: dict | None) -> dict:
    return {k: v for k, v in (status or {}).items() if k != "observedAt"}


def _record_error(task: Task, exc: client.GitHubError) -> None:
    now = timezone.now()
    message = str(exc)
    pause = None
    if isinstance(exc, client.RateLimited):
        if exc.reset_at and exc.reset_at > now:
            pause = exc.reset_at
        else:
            pause = now + (timedelta(seconds=exc.retry_after) if exc.retry_after else RATE_LIMIT_PAUSE)
    with transaction.atomic():
        watch, _ = PullWatch.objects.select_for_update().get_or_create(task=task, defaults={"pr_url": task.pr_url})
        repeated = watch.last_error == message
        watch.last_error, watch.last_error_at, watch.checked_at = message, now, now
        watch.next_check_after = pause
        watch.save()
        if not repeated:  # one log line per new problem, not one per poll
            logs.log(task, f"Could not check the pull request: {message}", type="prwatch", ok=False)
    log.warning("PR watcher could not check task %s: %s", task.pk, message)
