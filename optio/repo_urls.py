"""Canonical repository URLs: one spelling per repository, used on save and on lookup."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_SCP = re.compile(r"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?P<path>[^/].*)$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")


class InvalidRepoUrl(ValueError):
    pass


def normalize_repo_url(raw: str) -> str:
    """Return `https://host/owner/name` for any common spelling of a repository URL.

    Accepts https/http/ssh/git URLs, `git@host:owner/name(.git)` and `host/owner/name`.
    Host, owner and name are lowercased (GitHub treats them case-insensitively); user
    names and tokens in the URL are dropped, so they are never stored.
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
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:  # a port that is not a number, a broken IPv6 literal
            raise InvalidRepoUrl(f"{raw!r} is not a repository URL; expected https://host/owner/name.") from None
        if parts.scheme not in ("http", "https", "ssh", "git", "git+ssh"):
            raise InvalidRepoUrl(f"Unsupported URL scheme {parts.scheme!r}; use https://host/owner/name.")
        host = parts.hostname or ""
        # An ssh port says nothing about the web address; an https port (GitHub Enterprise) does.
        if port and parts.scheme in ("http", "https") and port not in (80, 443):
            host = f"{host}:{port}"
        path = parts.path
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    segments = [s for s in path.split("/") if s]
    host = host.lower()
    if not host or not _HOST.match(host) or len(segments) != 2:
        raise InvalidRepoUrl(f"{raw!r} is not a repository URL; expected https://host/owner/name.")
    if not all(_SEGMENT.match(s) and s.strip(".") for s in segments):
        raise InvalidRepoUrl(f"{raw!r} has characters that cannot appear in an owner or repository name.")
    owner, name = segments
    return f"https://{host}/{owner.lower()}/{name.lower()}"
