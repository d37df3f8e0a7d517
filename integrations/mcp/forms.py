"""The settings form's text fields <-> the definition `validation.clean` accepts.

args: one per line (or a JSON array, for arguments that contain line breaks or are empty);
env: NAME=value per line; headers: Name: value per line.
"""

from __future__ import annotations

import json
from typing import Any

from integrations.mcp.models import MCPServer, Transport
from optio.models import Repo


class FormError(ValueError):
    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def initial(server: MCPServer | None, repo: Repo | None = None) -> dict[str, Any]:
    """Text values to fill the form with."""
    if server is None:
        return {"name": "", "repo": str(repo.pk) if repo else "", "transport": "stdio", "command": "", "args": "",
                "env": "", "url": "", "headers": "", "enabled": True}  # fmt: skip
    return {
        "name": server.name,
        "repo": str(server.repo_id or ""),
        "transport": server.transport,
        "command": server.command,
        "args": _args_text(server.args),
        "env": "\n".join(f"{k}={v}" for k, v in server.env.items()),
        "url": server.url,
        "headers": "\n".join(f"{k}: {v}" for k, v in server.headers.items()),
        "enabled": server.enabled,
    }


def _args_text(args: list[str]) -> str:
    if any("\n" in a or not a.strip() for a in args):
        return json.dumps(args)
    return "\n".join(args)


def submitted(post) -> dict[str, Any]:
    """The submitted text, to redisplay the form as it was sent."""
    text = {key: post.get(key, "") for key in ("name", "repo", "transport", "command", "args", "env", "url", "headers")}
    text["enabled"] = post.get("enabled") == "on"
    return text


def to_data(text: dict[str, Any]) -> dict[str, Any]:
    """The definition `validation.clean` accepts. Raises FormError on text that cannot be read."""
    repo_url = None
    if text["repo"]:
        repo = Repo.objects.filter(pk=text["repo"]).first() if text["repo"].isdigit() else None
        if repo is None:
            raise FormError("repo", "That repository is no longer connected; pick another scope.")
        repo_url = repo.url
    data: dict[str, Any] = {"name": text["name"], "repoUrl": repo_url, "enabled": text["enabled"]}
    transport = text["transport"] if text["transport"] in Transport.values else Transport.STDIO
    data["transport"] = transport
    if transport == Transport.HTTP:
        data["url"] = text["url"]
        data["headers"] = _pairs("headers", text["headers"], ":")
    else:
        data["command"] = text["command"]
        data["args"] = _parse_args(text["args"])
        data["env"] = _pairs("env", text["env"], "=")
    return data


def _parse_args(value: str) -> Any:
    if value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise FormError("args", f"args looks like a JSON array but is not valid JSON: {exc}.") from None
    return [line.strip() for line in value.splitlines() if line.strip()]


def _pairs(field: str, value: str, sep: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for number, line in enumerate(value.splitlines(), start=1):
        if not line.strip():
            continue
        key, found, rest = line.partition(sep)
        if not found or not key.strip():
            example = "GITHUB_TOKEN={{GITHUB_TOKEN}}" if sep == "=" else "Authorization: Bearer {{API_TOKEN}}"
            raise FormError(field, f"{field} line {number} should look like {example}.")
        pairs[key.strip()] = rest.strip()
    return pairs
