"""Inbound GitHub deliveries: the ledger (one row per `X-GitHub-Delivery`) and one handler per event.

A handler reads only what it needs from the payload and returns the delivery's subject
(which PRs or commit, or which issue); the work itself (re-checking tasks, syncing a ticket
provider) runs later in Celery, in `process()`. Events not in `HANDLERS` and actions a
handler does not want are acknowledged and ignored.
https://docs.github.com/en/webhooks/webhook-events-and-payloads
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from integrations.prwatch import watcher
from integrations.prwatch.models import InboundDelivery
from integrations.prwatch.status import WATCHED_STATES, own_pull
from optio.models import Repo, Task
from optio.repo_urls import InvalidRepoUrl, normalize_repo_url

log = logging.getLogger(__name__)
S = InboundDelivery.Status
# GitHub redelivers only recent deliveries (the last 3 days), so older ledger rows are history.
KEEP = timedelta(days=30)


@dataclass
class Received:
    status: int
    body: dict


# -- handlers: payload -> subject, or None to ignore -------------------------------------


def _pull_request(payload: dict) -> dict | None:
    # closed (merged or not), reopened, synchronize (new commits: checks start over)
    if payload.get("action") not in ("closed", "reopened", "synchronize"):
        return None
    pull = payload.get("pull_request") or {}
    number = payload.get("number") or pull.get("number")
    return {"kind": "pull", "numbers": [int(number)]} if number else None


def _check(key: str) -> Callable[[dict], dict | None]:
    def handler(payload: dict) -> dict | None:
        if payload.get("action") != "completed":
            return None
        item = payload.get(key) or {}
        numbers = sorted({int(p["number"]) for p in item.get("pull_requests") or [] if p.get("number")})
        # `pull_requests` is empty for PRs from forks; the head SHA still finds the task.
        sha = item.get("head_sha") or ""
        return {"kind": "pull", "numbers": numbers, "sha": sha} if numbers or sha else None

    return handler


def _status(payload: dict) -> dict | None:
    # Commit statuses (older CI integrations) have no action; each change is a delivery.
    sha = payload.get("sha") or ""
    return {"kind": "pull", "numbers": [], "sha": sha} if sha else None


def _review(payload: dict) -> dict | None:
    # A dismissed change request lifts it, so that matters as much as a submitted review.
    if payload.get("action") not in ("submitted", "dismissed"):
        return None
    number = (payload.get("pull_request") or {}).get("number")
    return {"kind": "pull", "numbers": [int(number)]} if number else None


def _issues(payload: dict) -> dict | None:
    if payload.get("action") not in ("opened", "labeled"):
        return None
    number = (payload.get("issue") or {}).get("number")
    return {"kind": "issue", "number": int(number)} if number else None


HANDLERS: dict[str, Callable[[dict], dict | None]] = {
    "pull_request": _pull_request,
    "check_suite": _check("check_suite"),
    "check_run": _check("check_run"),
    "status": _status,
    "pull_request_review": _review,
    "issues": _issues,
}


# -- receiving ---------------------------------------------------------------------------


def _repo_of(payload: dict) -> Repo | None:
    url = (payload.get("repository") or {}).get("html_url") or ""
    try:
        return Repo.objects.filter(url=normalize_repo_url(url)).first() if url else None
    except InvalidRepoUrl:
        return None


def receive(delivery_id: str, event: str, payload: dict, *, signed_for: int | None) -> Received:
    """Record a verified delivery once and queue its work; a redelivery is acknowledged and skipped."""
    action = str(payload.get("action") or "")[:64]
    full_name = str((payload.get("repository") or {}).get("full_name") or "")[:200]
    repo = _repo_of(payload)
    if signed_for is not None and event != "ping" and (repo is None or repo.pk != signed_for):
        # A repository's own secret speaks for that repository only.
        return Received(403, {"error": f"This delivery is signed with another repository's GITHUB_WEBHOOK_SECRET, "
                                       f"not one that may speak for {full_name or 'this repository'}.", "details": {}})  # fmt: skip

    subject, status, detail = None, S.IGNORED, ""
    if event == "ping":
        status, detail = S.PROCESSED, "ping"
    elif event not in HANDLERS:
        detail = f"Optio does not use {event} events."
    elif repo is None:
        detail = f"{full_name or 'The repository'} is not connected to Optio."
    else:
        subject = HANDLERS[event](payload)
        if subject is None:
            detail = f"Optio does not act on {event}.{action or '(no action)'}."
        else:
            subject["repoId"] = repo.pk
            status = S.QUEUED

    with transaction.atomic():
        try:
            with transaction.atomic():
                row = InboundDelivery.objects.create(
                    delivery_id=delivery_id,
                    event=event,
                    action=action,
                    repo_full_name=full_name,
                    subject=subject or {},
                    status=status,
                    detail=detail,
                    processed_at=timezone.now() if status != S.QUEUED else None,
                )
        except IntegrityError:
            return Received(200, {"ok": True, "duplicate": True, "delivery": delivery_id})
        if status == S.QUEUED:
            transaction.on_commit(lambda: _enqueue(row.pk))

    body = {"ok": True, "delivery": delivery_id, "event": event, "status": status}
    if event == "ping":
        body["zen"] = payload.get("zen", "")
    if detail and status == S.IGNORED:
        body["ignored"] = detail
    return Received(202 if status == S.QUEUED else 200, body)


def _enqueue(row_id: int) -> None:
    from integrations.prwatch.tasks import handle_delivery

    try:
        handle_delivery.delay(row_id)
    except Exception:  # broker down: the poller still catches PR changes within one interval
        log.warning("could not enqueue GitHub delivery %s", row_id, exc_info=True)


# -- processing (Celery) -----------------------------------------------------------------


def process(row_id: int) -> str:
    """Do what a queued delivery asks, once: the row is claimed before any work starts."""
    if not InboundDelivery.objects.filter(pk=row_id, status=S.QUEUED).update(status=S.PROCESSED):
        return "skipped"
    row = InboundDelivery.objects.get(pk=row_id)
    repo = Repo.objects.filter(pk=row.subject.get("repoId")).first()
    try:
        if repo is None:
            detail = "The repository is no longer connected."
        elif row.subject.get("kind") == "issue":
            detail = _sync_tickets(repo)
        else:
            detail = _recheck(repo, row.subject.get("numbers") or [], row.subject.get("sha") or "")
    except Exception as exc:
        InboundDelivery.objects.filter(pk=row_id).update(
            status=S.FAILED, detail=f"{exc.__class__.__name__}: {exc}"[:2000], processed_at=timezone.now()
        )
        raise
    InboundDelivery.objects.filter(pk=row_id).update(detail=detail, processed_at=timezone.now())
    return detail


def tasks_for(repo: Repo, numbers: list[int], sha: str = "") -> list[str]:
    """Watched tasks of `repo` whose PR is one of `numbers`, or whose last seen head commit is `sha`."""
    match = Q()
    for number in numbers:
        match |= Q(pr_url__icontains=f"/pull/{int(number)}")
    if sha:
        match |= Q(pr_status__headSha=sha)
    if not match:
        return []
    rows = Task.objects.filter(match, repo=repo, state__in=WATCHED_STATES).values_list("pk", "pr_url", "pr_status")
    found = []
    for pk, pr_url, pr_status in rows:
        ref = own_pull(pr_url, repo.url)
        if ref is not None and (ref.number in numbers or (sha and (pr_status or {}).get("headSha") == sha)):
            found.append(str(pk))
    return found


def _recheck(repo: Repo, numbers: list[int], sha: str) -> str:
    ids = tasks_for(repo, numbers, sha)
    if not ids:
        return "No task is waiting on this pull request."
    results = [(task_id, watcher.check_task(task_id, source="hook")) for task_id in ids]
    return "; ".join(f"task {task_id}: {r.outcome}" + (f" → {r.to}" if r.to else "") for task_id, r in results)


def _sync_tickets(repo: Repo) -> str:
    """Sync the GitHub ticket providers that read this repository, now rather than at the next tick."""
    from tickets import tasks as ticket_tasks
    from tickets.models import TicketProvider

    providers = [
        p.pk
        for p in TicketProvider.objects.filter(source="github", enabled=True)
        if repo.url in (p.config or {}).get("repos", [])
    ]
    for provider_id in providers:
        ticket_tasks.enqueue(provider_id)
    if not providers:
        return f"No enabled GitHub ticket provider reads {repo.full_name}."
    return f"Syncing ticket provider(s) {', '.join(map(str, providers))}."


def prune(older_than: timedelta = KEEP) -> int:
    """Delete ledger rows older than `older_than`; returns how many."""
    deleted, _ = InboundDelivery.objects.filter(received_at__lt=timezone.now() - older_than).delete()
    return deleted
