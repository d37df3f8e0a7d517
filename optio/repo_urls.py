"""Canonical repository URLs: one spelling per repository, used on save and on lookup."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_SCP = re.compile(r"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?P<path>[^/].*)$")


class InvalidRepoUrl(ValueError):
    pass


def normalize_repo_url(raw: str) -> str:
    """Return `https://host/owner/name` for any common spelling of a repository URL.

    Accepts https/http/ssh/git URLs, `git@host:owner/name(.git)` and `host/owner/name`.
    Host, owner and name are lowercased (GitHub treats them case-insensitively).
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidRepoUrl("A repository URL is required, like https://github.com/owner/name.")
    value = raw.strip()
    scp = _SCP.match(value)
    if scp and "://" not in value:
        host, path = scp.group("host"), scp.group("path")
    else:
        if "://" not in value:
            value = "https://" + value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https", "ssh", "git", "git+ssh"):
            raise InvalidRepoUrl(f"Unsupported URL scheme {parts.scheme!r}; use https://host/owner/name.")
        host = parts.hostname or ""
        if parts.port and parts.scheme in ("http", "https"):
            host = f"{host}:{parts.port}"
        path = parts.path
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    segments = [s for s in path.split("/") if s]
    if not host or len(segments) != 2:
        raise InvalidRepoUrl(f"{raw!r} is not a repository URL; expected https://host/owner/name.")
    if not all(re.fullmatch(r"[A-Za-z0-9_.-]+", s) for s in segments):
        raise InvalidRepoUrl(f"{raw!r} has characters that cannot appear in an owner or repository name.")
    owner, name = segments
    return f"https://{host.lower()}/{owner.lower()}/{name.lower()}"
