"""MCP server definitions: global (repo is null) or for one repository.

A definition holds `{{SECRET_NAME}}` references, never secret values; values are filled in
only when a task's configuration is resolved (integrations/mcp/resolution.py).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from optio.models import Repo


class Transport(models.TextChoices):
    STDIO = "stdio"
    HTTP = "http"


class MCPServer(models.Model):
    # The key in the agent's `.mcp.json`; validated by integrations/mcp/validation.py.
    name = models.CharField(max_length=64)
    repo = models.ForeignKey(Repo, null=True, blank=True, on_delete=models.CASCADE, related_name="mcp_servers")
    transport = models.CharField(max_length=8, choices=Transport.choices, default=Transport.STDIO)
    # stdio
    command = models.CharField(max_length=1000, blank=True, default="")
    args = models.JSONField(default=list, blank=True)
    env = models.JSONField(default=dict, blank=True)
    # http
    url = models.CharField(max_length=2000, blank=True, default="")
    headers = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = "MCP server"
        constraints = [
            models.UniqueConstraint(fields=["name", "repo"], name="mcpserver_unique_per_repo"),
            models.UniqueConstraint(fields=["name"], condition=Q(repo__isnull=True), name="mcpserver_unique_global"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.scope})"

    @property
    def scope(self) -> str:
        return self.repo.url if self.repo_id else "global"

    @property
    def is_global(self) -> bool:
        return self.repo_id is None

    def templated_values(self) -> list[str]:
        """Every stored string that may hold `{{SECRET}}` references."""
        if self.transport == Transport.HTTP:
            return [self.url, *self.headers.values()]
        return [*self.args, *self.env.values()]
