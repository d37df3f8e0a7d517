"""Write-back: tell the ticket a task came from what happened to it.

GitHub issue tasks: a comment with the PR link when the PR opens; a comment and closing the
issue (`state_reason: completed`) when the task completes; a comment with the reason when it
fails. Linear tasks: a comment with the PR link; the issue moved to the team's first
`started` state when the task starts running and its first `completed` state when it completes.

`on_event` is an event subscriber (optio.events): it only records a `Writeback` row, keyed so a
re-dispatched event records nothing new, and enqueues `send` on commit. `send` makes the
calls; a failure is stored on the task (`writeback_error`) and in its log, and never touches
the task's state. Per repository, `Repo.writeback_enabled` (on by default) turns it all off.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from integrations.github import client as github
from integrations.linear import client as linear
from integrations.prwatch import linear_writeback
from integrations.prwatch.models import Writeback
from optio import logs
from optio.models import Event, Task

log = logging.getLogger(__name__)

# Transient failures (GitHub or Linear down, a secondary rate limit) are tried this many times in all.
MAX_ATTEMPTS = 4
ACTIONS: dict[str, dict[str, str]] = {
    "github": {"task.pr_opened": "pr_link", "task.completed": "completed", "task.failed": "failed"},
    "linear": {"task.pr_opened": "pr_link", "task.running": "started", "task.completed": "completed"},
}
TRANSIENT = (github.Unavailable, github.RateLimited, linear.LinearUnavailable, linear.LinearRateLimited)
W = Writeback.Status


# -- recording (the event subscriber) ----------------------------------------------------


def on_event(event: Event) -> None:
    action = ACTIONS.get(_source(event), {}).get(event.name)
    if action is None or event.task_id is None:
        return
    task = Task.objects.select_related("repo").filter(pk=event.task_id).first()
    if task is None or not task.repo.writeback_enabled or not task.ticket_external_id:
        return
    if task.ticket_source == "github" and not task.ticket_external_id.isdigit():
        return  # not an issue number: nothing on GitHub to write to
    target = task.ticket_source
    pr_url = event.data.get("prUrl") or ""
    if action == "pr_link" and not pr_url:
        return
    row, created = Writeback.objects.get_or_create(
        key=_key(task, target, action, event, pr_url),
        defaults={
            "task": task,
            "event": event,
            "target": target,
            "action": action,
            "payload": {"prUrl": pr_url, "error": event.data.get("error") or "", "taskUrl": task.page_url},
        },
    )
    if created:
        transaction.on_commit(lambda: _enqueue(row.pk))


def _source(event: Event) -> str:
    return (event.data or {}).get("ticketSource") or ""


def _key(task: Task, target: str, action: str, event: Event, pr_url: str) -> str:
    if action == "pr_link":  # one announcement per PR, however often the task returns to pr_opened
        return f"{task.pk}:{target}:pr_link:{hashlib.sha256(pr_url.encode()).hexdigest()[:32]}"
    if action == "completed":  # completed is final: once per task
        return f"{task.pk}:{target}:completed"
    return f"{task.pk}:{target}:{action}:{event.public_id}"  # a task can fail, be retried and fail again


def _enqueue(row_id: int) -> None:
    from integrations.prwatch.tasks import send_writeback

    try:
        send_writeback.delay(row_id)
    except Exception:
        log.warning("could not enqueue write-back %s", row_id, exc_info=True)


# -- sending (Celery) --------------------------------------------------------------------


@dataclass
class SendResult:
    status: str
    retry_in: int | None = None


def send(row_id: int) -> SendResult:
    """Make the calls of one write-back. Steps already done (before a retry) are not repeated.

    A transient failure returns `retry_in` (seconds) until MAX_ATTEMPTS is reached; then it is
    recorded like any other failure.
    """
    row = Writeback.objects.select_related("task__repo").filter(pk=row_id).first()
    if row is None:
        return SendResult("missing")
    if row.status != W.PENDING:
        return SendResult(row.status)
    task = row.task
    if not task.repo.writeback_enabled:  # switched off since the event
        Writeback.objects.filter(pk=row.pk).update(status=W.SKIPPED, detail="Write-back is off for this repository.")
        return SendResult(W.SKIPPED)
    Writeback.objects.filter(pk=row.pk).update(attempts=F("attempts") + 1)
    attempts = row.attempts + 1
    last_try = attempts >= MAX_ATTEMPTS

    done, failures, notes = list(row.steps_done), [], []
    for name, what, call in _steps(row):
        if name in done:
            continue
        try:
            notes.append(call())
        except TRANSIENT as exc:
            if not last_try:
                Writeback.objects.filter(pk=row.pk).update(steps_done=done, detail=str(exc))
                return SendResult(W.PENDING, retry_in=_backoff(exc, attempts))
            failures.append(f"Could not {what}: {exc}")
        except (github.GitHubError, linear.LinearError) as exc:
            failures.append(f"Could not {what}: {exc}")
        except Exception as exc:  # write-back is never fatal, whatever went wrong
            log.exception("write-back %s failed", row.pk)
            failures.append(f"Could not {what}: unexpected {exc.__class__.__name__}.")
        else:
            done.append(name)

    label = _ticket_label(task)
    if failures:
        message = f"Write-back to {label} failed. " + " ".join(failures)
        Writeback.objects.filter(pk=row.pk).update(status=W.FAILED, steps_done=done, detail=message)
        # An update, not save(): the task's state may be moving right now and must not be overwritten.
        Task.objects.filter(pk=task.pk).update(writeback_error=message)
        logs.log(task, message, type="writeback", target=row.target, action=row.action, ok=False)
        return SendResult(W.FAILED)
    summary = " ".join(n for n in notes if n) or "Nothing to do."
    Writeback.objects.filter(pk=row.pk).update(status=W.SENT, steps_done=done, detail=summary, sent_at=timezone.now())
    logs.log(task, f"Write-back to {label}: {summary}", type="writeback", target=row.target, action=row.action, ok=True)
    return SendResult(W.SENT)


def _backoff(exc: Exception, attempts: int) -> int:
    wait = getattr(exc, "retry_after", None)
    return int(wait) if wait else min(600, 30 * 2**attempts)


def _ticket_label(task: Task) -> str:
    if task.ticket_source == "github":
        return f"{task.repo.full_name}#{task.ticket_external_id}"
    return task.ticket_external_id


Step = tuple[str, str, Callable[[], str]]


def _steps(row: Writeback) -> list[Step]:
    task, p = row.task, row.payload
    if row.target == "github":
        repo, number = task.repo, int(task.ticket_external_id)
        where = f"{repo.full_name}#{number}"

        def comment(body: str) -> Callable[[], str]:
            return lambda: (github.create_comment(repo, number, body), f"Commented on {where}.")[1]

        def close() -> str:
            github.update_issue(repo, number, state="closed", state_reason="completed")
            return f"Closed {where} as completed."

        if row.action == "pr_link":
            return [("comment", f"comment on {where}", comment(pr_opened_body(p)))]
        if row.action == "completed":
            return [("comment", f"comment on {where}", comment(completed_body(p))), ("close", f"close {where}", close)]
        if row.action == "failed":
            return [("comment", f"comment on {where}", comment(failed_body(p)))]
    if row.target == "linear":
        ident = task.ticket_external_id
        if row.action == "pr_link":
            return [("comment", f"comment on {ident}", lambda: linear_writeback.comment(task, pr_opened_body(p)))]
        if row.action in ("started", "completed"):
            return [("move", f"move {ident} to {row.action}", lambda: linear_writeback.move(task, row.action))]
    return []


# -- what the comments say ---------------------------------------------------------------


def pr_opened_body(p: dict) -> str:
    return f"Optio opened a pull request for this issue: {p['prUrl']}\n\nFollow the task: {p['taskUrl']}"


def completed_body(p: dict) -> str:
    done = f"{p['prUrl']} was merged, so Optio's task" if p.get("prUrl") else "Optio's task"
    return f"{done} for this issue is complete; closing the issue.\n\nTask: {p['taskUrl']}"


def failed_body(p: dict) -> str:
    reason = p.get("error") or "no reason was given"
    return f"Optio's task for this issue failed: {reason}\n\nTask: {p['taskUrl']}"
