"""Writes of MCP server definitions, and the warnings a save answers with."""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction

from integrations.mcp import templating
from integrations.mcp.models import MCPServer, Transport
from integrations.mcp.validation import ServerSpec, clean
from optio.models import Secret

# Well-known token shapes: pasted into a definition they would show up in every listing.
_LITERAL_TOKEN = re.compile(
    r"(?<![A-Za-z0-9])(?:(?:ghp_|gho_|ghs_|ghu_|github_pat_|glpat-|xox[abposr]-|sk-|sk_live_|lin_api_)[A-Za-z0-9_-]{16,}"
    r"|AKIA[0-9A-Z]{16})"
)


class NameTaken(Exception):
    def __init__(self, name: str, scope: str, existing_id: int | None = None):
        self.name, self.scope, self.existing_id = name, scope, existing_id
        where = "globally" if scope == "global" else f"for {scope}"
        super().__init__(
            f'An MCP server named "{name}" already exists {where}; names are unique within their scope. '
            "Pick another name or edit the existing server."
        )


@transaction.atomic
def create_server(data: Any) -> tuple[MCPServer, list[str], list[str]]:
    """Validate and store a new server. Returns (server, warnings, missing secret names)."""
    spec = clean(data)
    server = MCPServer()
    _apply(server, spec)
    _save(server)
    return server, *save_warnings(server)


@transaction.atomic
def update_server(server: MCPServer, data: Any) -> tuple[MCPServer, list[str], list[str]]:
    """Apply a partial update. Returns (server, warnings, missing secret names)."""
    server = MCPServer.objects.select_for_update(of=("self",)).select_related("repo").get(pk=server.pk)
    spec = clean(data, instance=server)
    _apply(server, spec)
    _save(server)
    return server, *save_warnings(server)


def delete_server(server: MCPServer) -> None:
    server.delete()


def _apply(server: MCPServer, spec: ServerSpec) -> None:
    server.name, server.repo, server.transport, server.enabled = spec.name, spec.repo, spec.transport, spec.enabled
    if spec.transport == Transport.HTTP:
        server.url, server.headers = spec.url, spec.headers
        server.command, server.args, server.env = "", [], {}
    else:
        server.command, server.args, server.env = spec.command, spec.args, spec.env
        server.url, server.headers = "", {}


def _save(server: MCPServer) -> None:
    scope = server.repo.url if server.repo_id else "global"
    clash = MCPServer.objects.filter(name=server.name, repo=server.repo).exclude(pk=server.pk).first()
    if clash is not None:
        raise NameTaken(server.name, scope, clash.pk)
    try:
        with transaction.atomic():
            server.save()
    except IntegrityError:  # a concurrent save of the same name won
        raise NameTaken(server.name, scope) from None


def missing_secrets(server: MCPServer) -> list[str]:
    """Referenced secrets not stored where this server's tasks would look (its repository, then global)."""
    names = templating.references_in(server.templated_values())
    stored = Secret.objects.filter(name__in=names, repo__isnull=True)
    if server.repo_id:
        stored = stored | Secret.objects.filter(name__in=names, repo_id=server.repo_id)
    found = set(stored.values_list("name", flat=True))
    return [n for n in names if n not in found]


def save_warnings(server: MCPServer) -> tuple[list[str], list[str]]:
    """Sentences for the save response: missing secrets (all named in one sentence), pasted tokens."""
    warnings: list[str] = []
    missing = missing_secrets(server)
    if missing:
        names = ", ".join(missing)
        noun = "Secret" if len(missing) == 1 else "Secrets"
        verb = "is" if len(missing) == 1 else "are"
        if server.repo_id:
            where = f"stored for {server.repo.url} or globally"
            effect = "tasks in that repository will be refused their MCP configuration"
        else:
            where = "stored globally"
            effect = "tasks in repositories without their own copy will be refused their MCP configuration"
        warnings.append(
            f"{noun} {names} {verb} not {where}; {effect} until {'it is' if len(missing) == 1 else 'they are'} "
            "set with POST /api/secrets."
        )
    for where, value in _labelled_values(server):
        if _LITERAL_TOKEN.search(templating.strip_references(value)):
            warnings.append(
                f"{where} looks like a literal token; store it as a secret (POST /api/secrets) and write "
                "{{SECRET_NAME}} here instead, so it never appears in listings."
            )
    return warnings, missing


def _labelled_values(server: MCPServer) -> list[tuple[str, str]]:
    if server.transport == Transport.HTTP:
        return [("url", server.url), *((f"headers.{k}", v) for k, v in server.headers.items())]
    return [*((f"args[{i}]", a) for i, a in enumerate(server.args)), *((f"env.{k}", v) for k, v in server.env.items())]
