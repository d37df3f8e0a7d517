"""Which MCP servers apply to a repository, which secrets they need, and the resolved `.mcp.json`.

A repository's server replaces the global server of the same name — also when the repository's
server is disabled, which is how one repository opts out of a global server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q

from integrations.mcp import templating
from integrations.mcp.models import MCPServer, Transport
from optio import secrets as secret_service
from optio.models import Repo, Secret

APPLIES, DISABLED, OVERRIDDEN = "applies", "disabled", "overridden"


class UnresolvedConfig(Exception):
    """Secrets referenced by the applicable servers are not stored; names only, never values."""

    def __init__(self, repo: Repo, missing: list[str], by_server: dict[str, list[str]]):
        self.repo, self.missing, self.by_server = repo, missing, by_server
        used_by = "; ".join(f"{name} (used by {', '.join(servers)})" for name, servers in self._users().items())
        super().__init__(
            f"The MCP configuration for {repo.url} references secrets that are not stored: {used_by}. "
            "Store them with POST /api/secrets (globally or for this repository), then fetch the configuration again."
        )

    def _users(self) -> dict[str, list[str]]:
        users: dict[str, list[str]] = {name: [] for name in self.missing}
        for server, names in self.by_server.items():
            for name in names:
                users[name].append(server)
        return users


@dataclass
class SecretRef:
    name: str
    source: str | None  # "repository", "global", or None when missing

    @property
    def missing(self) -> bool:
        return self.source is None


@dataclass
class Candidate:
    """One server considered for a repository, and what became of it."""

    server: MCPServer
    status: str  # APPLIES, DISABLED or OVERRIDDEN
    overrides: MCPServer | None = None  # for a repository server: the global one it replaces
    overridden_by: MCPServer | None = None  # for a global server: the repository server replacing it
    secrets: list[SecretRef] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [ref.name for ref in self.secrets if ref.missing]


def candidates(repo: Repo) -> list[Candidate]:
    """Every global and repository server, by name, marked with whether it applies to `repo`."""
    servers = list(MCPServer.objects.filter(Q(repo__isnull=True) | Q(repo=repo)).select_related("repo"))
    own = {s.name: s for s in servers if s.repo_id == repo.pk}
    rows: list[Candidate] = []
    for server in servers:
        if server.is_global and server.name in own:
            rows.append(Candidate(server, OVERRIDDEN, overridden_by=own[server.name]))
            continue
        overrides = (
            next((s for s in servers if s.is_global and s.name == server.name), None) if not server.is_global else None
        )
        rows.append(Candidate(server, APPLIES if server.enabled else DISABLED, overrides=overrides))
    rows.sort(key=lambda c: (c.server.name, c.server.is_global))
    return rows


def applicable(repo: Repo) -> list[MCPServer]:
    return [c.server for c in candidates(repo) if c.status == APPLIES]


def effective(repo: Repo) -> list[Candidate]:
    """`candidates` with each applying server's secret references and where each would come from."""
    rows = candidates(repo)
    names = {n for c in rows if c.status == APPLIES for n in templating.references_in(c.server.templated_values())}
    found = set(Secret.objects.filter(name__in=names, repo=repo).values_list("name", flat=True))
    global_ = set(Secret.objects.filter(name__in=names, repo__isnull=True).values_list("name", flat=True))
    for c in rows:
        if c.status != APPLIES:
            continue
        c.secrets = [
            SecretRef(n, "repository" if n in found else "global" if n in global_ else None)
            for n in templating.references_in(c.server.templated_values())
        ]
    return rows


def resolve(repo: Repo) -> dict:
    """The `.mcp.json` document for a task in `repo`, secrets filled in. Raises UnresolvedConfig."""
    servers = applicable(repo)
    refs = {s.name: templating.references_in(s.templated_values()) for s in servers}
    values, missing = secret_service.resolve_many({n for names in refs.values() for n in names}, repo)
    if missing:
        by_server = {name: [n for n in names if n in missing] for name, names in refs.items()}
        raise UnresolvedConfig(repo, missing, {k: v for k, v in by_server.items() if v})
    return {"mcpServers": {s.name: _entry(s, values) for s in sorted(servers, key=lambda s: s.name)}}


def _entry(server: MCPServer, values: dict[str, str]) -> dict:
    def fill(value: str) -> str:
        return templating.render(value, values)

    if server.transport == Transport.HTTP:
        return {
            "type": "http",
            "url": fill(server.url),
            "headers": {k: fill(v) for k, v in server.headers.items()},
        }
    return {
        "command": server.command,
        "args": [fill(a) for a in server.args],
        "env": {k: fill(v) for k, v in server.env.items()},
    }
