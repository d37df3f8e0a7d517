"""GitHub Issues as tickets, read with the GitHub REST client (`integrations.github.client`).

Per repository the cursor holds `since`: the newest `updated_at` whose page is stored.
A run lists `state=open&sort=updated&direction=asc&since=<since>` one page at a time, each
page committed with its cursor, moving `since` to the newest `updated_at` seen, until a page
holds nothing newer than `since`. That last request is the one the next run starts with,
so a run with nothing changed is one conditional request per repository, answered 304
from the ETag cache.

Matching: `labels` is any-of (GitHub's `labels=` parameter means all-of, so it is only sent
when there is exactly one label; otherwise labels are checked here); `assignee` is a login,
`none` or `*`, sent to GitHub and checked again here. Pull requests are never tickets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from integrations.github import assign, client
from optio.models import Repo
from tickets.providers import fields
from tickets.providers.base import (
    Batch,
    Cleaned,
    Comment,
    ConfigError,
    FetchContext,
    FormField,
    SourceError,
    Ticket,
    TicketSource,
)

LOGIN_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
PER_PAGE = 100
# Requests per repository per run; the next run continues from the stored `since`.
MAX_REQUESTS_PER_REPO = 200


class GitHubSource(TicketSource):
    name = "github"
    label = "GitHub Issues"
    credential_keys = ("token",)
    ids_per_repo = True  # issue numbers repeat across repositories
    config_keys = {"repos", "labels", "assignee"}
    form_fields = (
        FormField("repos", "Repositories", "lines", required=True,
                  help="One repository URL per line; repositories not yet connected are connected.",
                  placeholder="https://github.com/acme/webapp"),
        FormField("labels", "Labels", "csv", help="Comma-separated; an issue matches if it has any of them. Empty: every open issue.",
                  placeholder="optio"),
        FormField("assignee", "Assignee", help="A GitHub login, none (unassigned) or * (anyone). Empty: no filter."),
        FormField("token", "GitHub token", "secret",
                  help="Optional; without it the GITHUB_TOKEN secret (repository, then global) is used."),
    )  # fmt: skip

    def clean(self, config: dict, credentials: dict[str, str]) -> Cleaned:
        fields.reject_unknown(config, self.config_keys | set(self.credential_keys), "GitHub")
        repos = fields.repo_urls(config, "repos")
        cleaned: dict = {"repos": repos, "labels": fields.labels(config)}
        assignee = config.get("assignee")
        if assignee in ("", None):
            cleaned["assignee"] = None
        elif not isinstance(assignee, str) or not (assignee in ("none", "*") or LOGIN_RE.match(assignee)):
            raise ConfigError(
                "assignee must be a GitHub login, 'none' (unassigned issues), '*' (any assignee) or null (no filter).",
                {"assignee": ["Not a GitHub login, 'none' or '*'."]},
            )
        else:
            cleaned["assignee"] = assignee
        token = fields.optional_secret(credentials, "token")
        return Cleaned(cleaned, {"token": token} if token else {}, repos)

    def describe(self, config: dict) -> str:
        repos = [url.split("/", 3)[-1] for url in config.get("repos", [])]
        shown = ", ".join(repos[:3]) + (f" and {len(repos) - 3} more" if len(repos) > 3 else "")
        parts = [shown or "no repositories"]
        labels = config.get("labels") or []
        parts.append(f"labels {', '.join(labels)}" if labels else "any label")
        assignee = config.get("assignee")
        if assignee:
            parts.append({"none": "unassigned", "*": "assigned"}.get(assignee, f"assigned to {assignee}"))
        return " · ".join(parts)

    def carry_cursor(self, old_config: dict, new_config: dict, cursor: dict) -> dict:
        # Same filters: a repository that stays keeps its place; only added ones start from scratch.
        if (old_config.get("labels"), old_config.get("assignee")) != (
            new_config.get("labels"),
            new_config.get("assignee"),
        ):
            return {}
        kept = set(new_config.get("repos") or [])
        return {"repos": {url: state for url, state in (cursor.get("repos") or {}).items() if url in kept}}

    # -- fetching ------------------------------------------------------------------------

    def fetch(self, ctx: FetchContext, cursor: dict) -> Iterator[Batch]:
        cursor = {"repos": dict(cursor.get("repos") or {})}
        repos = {r.url: r for r in Repo.objects.filter(url__in=ctx.config.get("repos", []))}
        failures: list[tuple[str, client.GitHubError | SourceError]] = []
        for url in ctx.config.get("repos", []):
            repo = repos.get(url)
            if repo is None:
                failures.append((url, SourceError(f"{url} is not a connected repository any more; connect it again.")))
                continue
            try:
                yield from self._fetch_repo(ctx, repo, cursor)
            except client.BadCredentials:
                if ctx.credentials.get("token"):
                    # The client's message names the GITHUB_TOKEN secret; here the provider's own token was used.
                    exc = SourceError(
                        f"GitHub rejected this provider's token for {repo.full_name} (HTTP 401); it may be revoked "
                        "or expired. Enter a new one in the provider's settings.",
                        "bad_credentials",
                    )
                failures.append((url, exc))
            except client.GitHubError as exc:
                # One repository failing (gone, no access) must not stop the others from syncing.
                failures.append((url, exc))
        if failures:
            raise _combined(failures)

    def _fetch_repo(self, ctx: FetchContext, repo: Repo, cursor: dict) -> Iterator[Batch]:
        token = ctx.credentials.get("token") or None
        labels = ctx.config.get("labels") or []
        params = {"state": "open", "sort": "updated", "direction": "asc", "per_page": PER_PAGE}
        if len(labels) == 1:
            params["labels"] = labels[0]
        if ctx.config.get("assignee"):
            params["assignee"] = ctx.config["assignee"]
        path = f"/repos/{repo.owner}/{repo.name}/issues"
        since = (cursor["repos"].get(repo.url) or {}).get("since") or ""
        page_number = 1
        for _ in range(MAX_REQUESTS_PER_REPO):
            query = dict(params, page=page_number)
            if since:
                query["since"] = since
            listing = client.paginate(repo, path, query, max_pages=1, token=token)
            # Every item moves the watermark, pull requests too, so a page of PRs is not re-read forever.
            newest = max([since] + [item.get("updated_at") or "" for item in listing.items])
            tickets = [self.ticket(repo, item) for item in listing.items if self.matches(ctx.config, item)]
            cursor["repos"][repo.url] = {"since": newest} if newest else {}
            yield Batch(tickets, _copy(cursor), requests=1, not_modified=listing.not_modified)
            if newest > since:
                # Keyset paging on `since` (inclusive): an issue updated while we page moves past
                # the watermark and is read later, never skipped by shifting page numbers.
                since, page_number = newest, 1
            elif listing.truncated:
                page_number += 1  # a full page sharing one timestamp: step through it by number
            else:
                return  # nothing newer than the watermark: caught up

    def matches(self, config: dict, item: dict) -> bool:
        if "pull_request" in item or item.get("state", "open") != "open":
            return False
        wanted = {name.lower() for name in config.get("labels") or []}
        if wanted:
            names = {
                (label.get("name") if isinstance(label, dict) else str(label)).lower()
                for label in item.get("labels") or []
            }
            if not wanted & names:
                return False
        assignee = config.get("assignee")
        logins = {(a or {}).get("login", "").lower() for a in item.get("assignees") or []}
        if (item.get("assignee") or {}).get("login"):
            logins.add(item["assignee"]["login"].lower())
        if assignee == "none":
            return not logins
        if assignee == "*":
            return bool(logins)
        if assignee:
            return assignee.lower() in logins
        return True

    def ticket(self, repo: Repo, item: dict) -> Ticket:
        return Ticket(
            external_id=str(item["number"]),
            title=item.get("title") or f"Issue #{item['number']}",
            body=item.get("body") or "",
            url=item.get("html_url") or f"{repo.url}/issues/{item['number']}",
            repo=repo.url,
            updated_at=item.get("updated_at") or "",
            labels=[
                (label.get("name") if isinstance(label, dict) else str(label)) for label in item.get("labels") or []
            ],
            comments=None if item.get("comments") else [],
            extra={"number": item["number"], "repo_id": repo.pk, "issue": item, "comments": []},
        )

    def complete(self, ctx: FetchContext, ticket: Ticket) -> Ticket:
        """Comments are a request per issue, so they are fetched only for issues that become tasks
        and only when GitHub says the issue has any."""
        if ticket.comments is not None:
            return ticket
        repo = Repo.objects.get(pk=ticket.extra["repo_id"])
        try:
            listing = client.list_issue_comments(
                repo, ticket.extra["number"], token=ctx.credentials.get("token") or None
            )
        except client.GitHubError as exc:
            raise _source_error(exc) from None
        ticket.extra["comments"] = list(listing.items)
        ticket.comments = [
            Comment((c.get("user") or {}).get("login", "someone"), c.get("body") or "", c.get("created_at") or "")
            for c in listing.items
        ]
        return ticket

    def prompt(self, ticket: Ticket) -> str:
        # The same prompt a manual assign writes (integrations.github.assign), so a task reads
        # the same whichever way the issue arrived.
        return assign.build_prompt(ticket.extra["issue"], ticket.extra["comments"])


def _copy(cursor: dict) -> dict:
    return {"repos": {url: dict(state) for url, state in cursor["repos"].items()}}


KINDS = {"missing_token": "config", "unprocessable": "invalid_request", "github_error": "error"}


def _source_error(exc: client.GitHubError) -> SourceError:
    retry_after = getattr(exc, "reset_at", None)
    if getattr(exc, "secondary", False) and exc.retry_after:
        from datetime import UTC, datetime, timedelta

        retry_after = datetime.now(UTC) + timedelta(seconds=exc.retry_after)
    return SourceError(str(exc), KINDS.get(exc.kind, exc.kind), retry_after)


def _combined(failures: list[tuple[str, Exception]]) -> SourceError:
    errors = [_source_error(exc) if isinstance(exc, client.GitHubError) else exc for _, exc in failures]
    if len(errors) == 1:
        return errors[0]
    message = f"{len(errors)} repositories failed: " + " | ".join(str(e) for e in errors[:5])
    first = errors[0]
    return SourceError(message, first.kind, max((e.retry_after for e in errors if e.retry_after), default=None))
