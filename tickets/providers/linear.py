"""Linear issues as tickets: GraphQL `issues` with a server-side filter, newest changes first.

Incremental by `updatedAt`: a run filters `updatedAt >= updatedAfter` (the newest change the
last complete run saw) and walks the pages with Linear's cursors. The cursor stored after
each page is `{updatedAfter, after, maxSeen}`, so a failed run resumes at the page that
failed; when the last page is done it becomes `{updatedAfter: maxSeen}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from integrations.linear import client
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

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
REPO_LABEL = re.compile(r"^repo:\s*(?P<repo>\S+)$", re.I)
DONE_STATE_TYPES = ["completed", "canceled"]
# One sync stops after this many pages and continues from its cursor on the next run.
MAX_PAGES_PER_SYNC = 200


class LinearSource(TicketSource):
    name = "linear"
    label = "Linear"
    credential_keys = ("apiKey",)
    required_credentials = ("apiKey",)
    ids_per_repo = False  # ENG-123 names one issue in the whole workspace
    config_keys = {"teamId", "projectId", "labels", "repoUrl"}
    form_fields = (
        FormField("apiKey", "API key", "secret", required=True,
                  help="A Linear personal API key (Settings → Security & access).", placeholder="lin_api_…"),
        FormField("teamId", "Team", help="A team id or key (ENG). Empty: every team the key can see."),
        FormField("projectId", "Project", help="A project id. Empty: any project."),
        FormField("labels", "Labels", "csv", help="Comma-separated; an issue matches if it has any of them."),
        FormField("repoUrl", "Repository", help="Where tasks run. An issue's own repo:owner/name label overrides it.",
                  placeholder="https://github.com/acme/webapp"),
    )  # fmt: skip

    def clean(self, config: dict, credentials: dict[str, str]) -> Cleaned:
        fields.reject_unknown(config, self.config_keys | set(self.credential_keys), "Linear")
        api_key = fields.required_secret(
            credentials, "apiKey", "a Linear personal API key (Settings → Security & access → Personal API keys)"
        )
        if api_key.lower().startswith("bearer "):
            raise ConfigError(
                "apiKey: paste the key itself (lin_api_…), without 'Bearer'.", {"apiKey": ["Remove the Bearer prefix."]}
            )
        cleaned: dict = {}
        for key in ("teamId", "projectId"):
            value = fields.optional_text(config, key, max_length=100)
            if value:
                cleaned[key] = value
        labels = fields.labels(config)
        if labels:
            cleaned["labels"] = labels
        repo = config.get("repoUrl")
        if repo:
            cleaned["repoUrl"] = fields.repo_url(repo, "repoUrl")
        return Cleaned(cleaned, {"apiKey": api_key}, [cleaned["repoUrl"]] if "repoUrl" in cleaned else [])

    def describe(self, config: dict) -> str:
        parts = [f"team {config['teamId']}" if config.get("teamId") else "all teams"]
        if config.get("projectId"):
            parts.append(f"project {config['projectId']}")
        if config.get("labels"):
            parts.append("labels " + ", ".join(config["labels"]))
        target = config.get("repoUrl", "").removeprefix("https://") or "repo: labels"
        return " · ".join(parts) + f" → {target}"

    def issue_filter(self, config: dict, updated_after: str | None) -> dict:
        """The IssueFilter for this config (https://linear.app/developers/filtering)."""
        clauses: list[dict] = [{"state": {"type": {"nin": DONE_STATE_TYPES}}}]
        team = config.get("teamId")
        if team:
            clauses.append({"team": {"id": {"eq": team}} if UUID_RE.match(team) else {"key": {"eqIgnoreCase": team}}})
        project = config.get("projectId")
        if project:
            clauses.append(
                {"project": {"id": {"eq": project}} if UUID_RE.match(project) else {"slugId": {"eq": project}}}
            )
        labels = config.get("labels") or []
        if labels:
            clauses.append({"labels": {"some": {"or": [{"name": {"eqIgnoreCase": name}} for name in labels]}}})
        if updated_after:
            # gte, not gt: a change in the same millisecond as the watermark is fetched again, never lost.
            clauses.append({"updatedAt": {"gte": updated_after}})
        return {"and": clauses}

    def fetch(self, ctx: FetchContext, cursor: dict) -> Iterator[Batch]:
        api_key = ctx.credentials.get("apiKey", "")
        if not api_key:
            raise SourceError("No Linear API key is stored for this provider; edit it and add one.", "config")
        watermark = cursor.get("updatedAfter")
        after = cursor.get("after")
        max_seen = cursor.get("maxSeen") or watermark or ""
        issue_filter = self.issue_filter(ctx.config, watermark)
        for _ in range(MAX_PAGES_PER_SYNC):
            try:
                page = client.list_issues(api_key, filter=issue_filter, after=after)
            except client.LinearQueryError as exc:
                if not after:
                    raise _source_error(exc) from None
                # A stored page cursor Linear no longer accepts: start this run over from the watermark.
                after, max_seen = None, watermark or ""
                continue
            except client.LinearError as exc:
                raise _source_error(exc) from None
            tickets = [self.ticket(node, ctx.config) for node in page.issues if _is_open(node)]
            for node in page.issues:
                max_seen = max(max_seen, node.get("updatedAt") or "")
            if page.has_next_page and page.end_cursor:
                next_cursor = {"updatedAfter": watermark, "after": page.end_cursor, "maxSeen": max_seen}
            else:
                next_cursor = {"updatedAfter": max_seen or watermark}
            yield Batch(tickets, {k: v for k, v in next_cursor.items() if v})
            if not (page.has_next_page and page.end_cursor):
                return
            after = page.end_cursor

    def ticket(self, node: dict, config: dict) -> Ticket:
        labels = [n.get("name", "") for n in (node.get("labels") or {}).get("nodes") or []]
        repo_labels = [m.group("repo") for m in (REPO_LABEL.match(name) for name in labels) if m]
        repo, skip = config.get("repoUrl"), ""
        if len(set(repo_labels)) > 1:
            repo, skip = None, f"it has more than one repo: label ({', '.join(repo_labels)}); keep one"
        elif repo_labels:
            repo = repo_labels[0]  # the issue's own label is more specific than the provider's default
        elif not repo:
            skip = "it names no repository: add a repo:owner/name label to the issue or set the provider's repoUrl"
        comments = [
            Comment(
                author=((c.get("user") or {}).get("displayName") or (c.get("user") or {}).get("name") or "someone"),
                body=c.get("body") or "",
                created_at=c.get("createdAt") or "",
            )
            for c in (node.get("comments") or {}).get("nodes") or []
        ]
        comments.sort(key=lambda c: c.created_at)
        return Ticket(
            external_id=node["identifier"],
            title=node.get("title") or node["identifier"],
            body=node.get("description") or "",
            url=node.get("url") or "",
            repo=repo,
            updated_at=node.get("updatedAt") or "",
            labels=labels,
            comments=comments,
            skip_reason=skip,
            extra={"id": node.get("id"), "state": (node.get("state") or {}).get("name")},
        )


def _is_open(node: dict) -> bool:
    return (node.get("state") or {}).get("type") not in DONE_STATE_TYPES


def _source_error(exc: client.LinearError) -> SourceError:
    return SourceError(str(exc), exc.kind, getattr(exc, "reset_at", None))
