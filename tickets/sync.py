"""The sync engine: turn each new matching ticket into exactly one queued task.

Exactly once, by construction:
- one sync per provider at a time: a lease on the provider row, taken with one conditional
  UPDATE and renewed with every page; a lease that is not renewed expires, so a worker
  that died mid-sync blocks nobody for long;
- a page's tasks and the cursor after it commit in one transaction, so a failure or a
  crash never skips a ticket, and a re-run after a crash re-reads at most one page;
- one active task per ticket is the database constraint `task_one_active_per_ticket`:
  concurrent syncs, a manual assign and a re-run all collide there, and the loser counts
  the ticket as existing;
- a ticket that already had a task (even one that ended) is not synced again: the engine
  looks up every task with the same source and external id before creating one.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from optio import lifecycle
from optio.models import Repo, Task
from tickets.models import MAX_CONSECUTIVE_FAILURES, TicketProvider
from tickets.providers import get_source
from tickets.providers.base import Batch, FetchContext, SourceError, Ticket, TicketSource

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
MAX_SKIPPED_SHOWN = 100
PREVIEW_LIMIT = 200


class Interrupted(Exception):
    """Stop without writing: the lease was lost, or the provider was disabled or re-configured mid-sync."""


@dataclass
class Stats:
    seen: int = 0
    created: int = 0
    existing: int = 0
    skipped: int = 0
    pages: int = 0
    requests: int = 0
    notModified: int = 0  # noqa: N815 - stored and served as JSON
    # Ticket versions handled in this run: the watermark page is read twice, counted once.
    handled: set = field(default_factory=set, repr=False)

    def as_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "handled"}


@dataclass
class SyncResult:
    status: str  # ok, failed, locked, interrupted
    stats: Stats = field(default_factory=Stats)
    error: str = ""
    error_kind: str = ""


# -- the lease ---------------------------------------------------------------------------


def acquire_lease(provider_id: int) -> str | None:
    """Take the provider's sync lease, or None if it is disabled or another sync holds it."""
    now = timezone.now()
    token = uuid.uuid4().hex
    taken = (
        TicketProvider.objects.filter(pk=provider_id, enabled=True)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
        .update(lease_token=token, lease_expires_at=now + LEASE, last_sync_started_at=now)
    )
    return token if taken else None


def release_lease(provider_id: int, token: str) -> None:
    TicketProvider.objects.filter(pk=provider_id, lease_token=token).update(lease_token="", lease_expires_at=None)


# -- running a sync ----------------------------------------------------------------------


def sync_provider(provider_id: int) -> SyncResult:
    """Sync one provider now, unless another sync of it is running (then: status "locked")."""
    token = acquire_lease(provider_id)
    if token is None:
        return SyncResult("locked")
    try:
        provider = TicketProvider.objects.get(pk=provider_id)
        return run(provider, token)
    finally:
        release_lease(provider_id, token)


def run(provider: TicketProvider, token: str) -> SyncResult:
    """The sync itself, for a caller that holds the lease `token`."""
    source = get_source(provider.source)
    stats = Stats()
    try:
        ctx = context(provider)
        resolver = RepoResolver()
        for batch in source.fetch(ctx, dict(provider.cursor)):
            store_batch(provider, source, ctx, batch, token, stats, resolver)
    except Interrupted as exc:
        log.info("sync of ticket provider %s stopped: %s", provider.pk, exc)
        return SyncResult("interrupted", stats, str(exc))
    except SourceError as exc:
        record_failure(provider.pk, token, str(exc), exc.kind, stats, retry_after=exc.retry_after)
        return SyncResult("failed", stats, str(exc), exc.kind)
    except Exception as exc:  # a bug must be visible on the provider, not only in a worker log
        log.exception("sync of ticket provider %s failed unexpectedly", provider.pk)
        message = f"The sync stopped on an unexpected error ({exc.__class__.__name__}); the worker log has details."
        record_failure(provider.pk, token, message, "error", stats)
        return SyncResult("failed", stats, message, "error")
    record_success(provider.pk, token, stats)
    return SyncResult("ok", stats)


class RepoResolver:
    """Connected repositories by URL and by `owner/name` (for Linear's repo: labels)."""

    def __init__(self):
        self.by_url: dict[str, Repo] = {}
        self.by_name: dict[str, list[Repo]] = {}
        for repo in Repo.objects.all():
            self.by_url[repo.url] = repo
            self.by_name.setdefault(repo.full_name.lower(), []).append(repo)

    def resolve(self, hint: str) -> tuple[Repo | None, str]:
        """(repo, "") or (None, why not)."""
        if "://" in hint or "@" in hint or hint.count("/") >= 2:
            from optio.repo_urls import InvalidRepoUrl, normalize_repo_url

            try:
                url = normalize_repo_url(hint)
            except InvalidRepoUrl:
                return None, f"{hint!r} is not a repository URL"
            repo = self.by_url.get(url)
            return (repo, "") if repo else (None, f"{url} is not a connected repository; connect it in Settings")
        matches = self.by_name.get(hint.strip().lower(), [])
        if len(matches) == 1:
            return matches[0], ""
        if not matches:
            return None, f"{hint} is not a connected repository; connect it in Settings"
        return None, f"{hint} matches {len(matches)} connected repositories; use the full URL in the label"


def context(provider: TicketProvider) -> FetchContext:
    try:
        credentials = provider.get_credentials()
    except ValueError:
        raise SourceError(
            "The stored credentials cannot be decrypted with the configured OPTIO_SECRET_KEYS; enter them again.",
            "config",
        ) from None
    return FetchContext(provider.pk, dict(provider.config), credentials)


def _task_key(source: TicketSource, repo_id: int, external_id: str):
    return (repo_id, external_id) if source.ids_per_repo else external_id


def classify(source: TicketSource, tickets: list[Ticket], resolver: RepoResolver):
    """Split tickets into (new, known, skipped): new = [(ticket, repo)], known = {key: (task id, state)},
    skipped = [(ticket, reason)]."""
    candidates, skipped = [], []
    for ticket in tickets:
        if ticket.skip_reason:
            skipped.append((ticket, ticket.skip_reason))
            continue
        repo, why = resolver.resolve(ticket.repo or "")
        if repo is None:
            skipped.append((ticket, why))
        else:
            candidates.append((ticket, repo))
    known: dict = {}
    ids = {t.external_id for t, _ in candidates}
    if ids:
        rows = (
            Task.objects.filter(ticket_source=source.name, ticket_external_id__in=ids)
            .order_by("created_at")
            .values_list("repo_id", "ticket_external_id", "id", "state")
        )
        for repo_id, external_id, task_id, state in rows:
            known[_task_key(source, repo_id, external_id)] = (task_id, state)
    new = [(t, r) for t, r in candidates if _task_key(source, r.pk, t.external_id) not in known]
    return new, known, skipped


def store_batch(
    provider: TicketProvider,
    source: TicketSource,
    ctx: FetchContext,
    batch: Batch,
    token: str,
    stats: Stats,
    resolver: RepoResolver,
) -> None:
    stats.pages += 1
    stats.requests += batch.requests
    stats.notModified += int(batch.not_modified)
    tickets = [t for t in batch.tickets if (t.repo, t.external_id, t.updated_at) not in stats.handled]
    stats.handled.update((t.repo, t.external_id, t.updated_at) for t in tickets)
    stats.seen += len(tickets)
    new, known, skipped = classify(source, tickets, resolver)
    stats.skipped += len(skipped)
    # Network before the transaction: no row locks are held while a remote answers.
    new = [(source.complete(ctx, ticket), repo) for ticket, repo in new]
    # One insertion order for every writer keeps concurrent syncs from deadlocking on the index.
    new.sort(key=lambda pair: (pair[1].pk, pair[0].external_id))
    now = timezone.now()
    with transaction.atomic():
        provider_row = TicketProvider.objects.select_for_update().filter(pk=provider.pk, lease_token=token).first()
        if provider_row is None:
            raise Interrupted("its lease expired and another sync took over")
        if not provider_row.enabled:
            raise Interrupted("it was disabled")
        if provider_row.config != ctx.config:
            # The filters changed (and the cursor was reset); this run's pages no longer apply.
            raise Interrupted("its config changed; the next sync starts over with the new one")
        for ticket, repo in new:
            try:
                lifecycle.create_task(
                    repo,
                    ticket.title,
                    source.prompt(ticket),
                    ticket_source=source.name,
                    ticket_external_id=ticket.external_id,
                    ticket_url=ticket.url,
                )
                stats.created += 1
            except IntegrityError:
                # task_one_active_per_ticket: a concurrent sync or a manual assign created it first.
                stats.existing += 1
        stats.existing += len(tickets) - len(new) - len(skipped)
        provider_row.cursor = batch.cursor
        provider_row.skipped = _skipped_map(provider_row.skipped, tickets, skipped, now)
        provider_row.lease_expires_at = now + LEASE
        provider_row.save(update_fields=["cursor", "skipped", "lease_expires_at", "updated_at"])


def _skipped_map(current: dict, tickets: list[Ticket], skipped: list[tuple[Ticket, str]], now) -> dict:
    result = dict(current or {})
    for ticket in tickets:
        result.pop(ticket.external_id, None)  # seen again: it is listed below only if still skipped
    for ticket, reason in skipped:
        result[ticket.external_id] = {
            "title": ticket.title[:200],
            "url": ticket.url,
            "reason": reason,
            "at": now.isoformat(),
        }
    if len(result) > MAX_SKIPPED_SHOWN:
        newest = sorted(result.items(), key=lambda kv: kv[1]["at"], reverse=True)[:MAX_SKIPPED_SHOWN]
        result = dict(newest)
    return result


# -- outcomes ----------------------------------------------------------------------------


@transaction.atomic
def record_success(provider_id: int, token: str, stats: Stats) -> None:
    provider = TicketProvider.objects.select_for_update().filter(pk=provider_id, lease_token=token).first()
    if provider is None:
        return
    provider.last_sync_at = timezone.now()
    provider.last_sync_stats = stats.as_json()
    provider.consecutive_failures = 0
    provider.last_error = ""
    provider.last_error_kind = ""
    provider.last_error_at = None
    provider.next_sync_after = None
    provider.save()


@transaction.atomic
def record_failure(provider_id: int, token: str, message: str, kind: str, stats: Stats, *, retry_after=None) -> None:
    """Record why a sync failed; the fifth failure in a row disables the provider.

    A rate limit is recorded and defers the next sync until the limit resets, but does not
    count towards disabling: it says "later", not "broken"."""
    provider = TicketProvider.objects.select_for_update().filter(pk=provider_id, lease_token=token).first()
    if provider is None:
        return
    now = timezone.now()
    provider.last_error = message
    provider.last_error_kind = kind
    provider.last_error_at = now
    provider.last_sync_stats = stats.as_json()
    if kind == "rate_limited":
        provider.next_sync_after = retry_after or now + timedelta(minutes=1)
    else:
        provider.consecutive_failures += 1
        if provider.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            provider.enabled = False
            provider.disabled_reason = (
                f"Disabled after {provider.consecutive_failures} failed syncs in a row. Last error: {message} "
                "Fix the cause, then enable the provider again."
            )
    provider.save()


# -- scheduling --------------------------------------------------------------------------


def due_provider_ids() -> list[int]:
    """Enabled providers that are not syncing now and not waiting out a rate limit."""
    now = timezone.now()
    return list(
        TicketProvider.objects.filter(enabled=True)
        .filter(Q(next_sync_after__isnull=True) | Q(next_sync_after__lte=now))
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
        .values_list("pk", flat=True)
    )


# -- preview -----------------------------------------------------------------------------


@dataclass
class Preview:
    tickets: list[dict]
    truncated: bool
    requests: int


def preview(provider: TicketProvider, *, limit: int = PREVIEW_LIMIT, max_requests: int = 30) -> Preview:
    """The open tickets the provider matches now and what a sync would do with each, without
    creating anything or moving the cursor. Raises SourceError."""
    source = get_source(provider.source)
    ctx = context(provider)
    resolver = RepoResolver()
    out: list[dict] = []
    requests = 0
    truncated = False
    seen: set = set()
    for batch in source.fetch(ctx, {}):
        requests += batch.requests
        new, known, skipped = classify(source, batch.tickets, resolver)
        new_ids = {id(t) for t, _ in new}
        skip_reasons = {id(t): why for t, why in skipped}
        for ticket in batch.tickets:
            if (ticket.repo, ticket.external_id) in seen:
                continue  # the watermark page is read twice
            seen.add((ticket.repo, ticket.external_id))
            item = {
                "externalId": ticket.external_id,
                "title": ticket.title,
                "url": ticket.url,
                "repoUrl": None,
                "action": "create",
                "reason": "",
                "task": None,
            }
            if id(ticket) in skip_reasons:
                item.update(action="skip", reason=skip_reasons[id(ticket)])
            else:
                repo, _ = resolver.resolve(ticket.repo or "")
                item["repoUrl"] = repo.url if repo else None
                if id(ticket) not in new_ids and repo is not None:
                    task_id, state = known[_task_key(source, repo.pk, ticket.external_id)]
                    item.update(action="exists", reason="already has a task", task={"id": str(task_id), "state": state})
            out.append(item)
        if len(out) >= limit or requests >= max_requests:
            truncated = True
            break
    return Preview(out[:limit], truncated, requests)
