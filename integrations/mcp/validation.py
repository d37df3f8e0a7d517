"""Check an MCP server definition (API body or settings form) and turn it into model fields.

Hand-written rather than a DRF serializer because the checks are type-exact: DRF's CharField
would quietly turn `42` into `"42"`, and agents need `args` and `env` values to be strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from integrations.mcp import templating
from integrations.mcp.models import MCPServer, Transport
from optio.models import Repo
from optio.repo_urls import InvalidRepoUrl, normalize_repo_url

NAME_RE = re.compile(r"^[A-Za-z0-9 ._-]{1,64}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token (RFC 9110 §5.6.2)

WRITABLE = ("name", "repoUrl", "transport", "command", "args", "env", "url", "headers", "enabled")
# `type` is accepted as another spelling of `transport`, as in the `.mcp.json` an entry may be copied from.
ALIASES = ("type",)
# Read-only fields of the API representation: ignored, so a client may send back what it read.
READ_ONLY = ("id", "scope", "secretRefs", "createdAt", "updatedAt", "warnings", "missingSecrets")
STDIO_FIELDS = ("command", "args", "env")
HTTP_FIELDS = ("url", "headers")

MAX_ARGS = 256
MAX_ITEMS = 200
MAX_VALUE = 8192


class InvalidServer(ValueError):
    """Bad input; `errors` maps each field to its messages, `str()` is the first sentence."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__(next(iter(errors.values()))[0])


@dataclass
class ServerSpec:
    name: str
    repo: Repo | None
    transport: str
    command: str = ""
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    enabled: bool = True


def as_input(server: MCPServer) -> dict[str, Any]:
    """A stored server in the shape `clean` accepts (the base of a partial update)."""
    data: dict[str, Any] = {
        "name": server.name,
        "repoUrl": server.repo.url if server.repo_id else None,
        "enabled": server.enabled,
    }
    if server.transport == Transport.HTTP:
        data.update(url=server.url, headers=dict(server.headers))
    else:
        data.update(command=server.command, args=list(server.args), env=dict(server.env))
    return data


def clean(data: Any, instance: MCPServer | None = None) -> ServerSpec:
    """Validate `data` (a full definition, or a partial update of `instance`). Raises InvalidServer."""
    if not isinstance(data, Mapping):
        raise InvalidServer({"non_field_errors": ["The body must be a JSON object describing one MCP server."]})
    unknown = sorted(set(data) - set(WRITABLE) - set(ALIASES) - set(READ_ONLY))
    if unknown:
        raise InvalidServer(
            {
                name: [f"Unknown field {', '.join(unknown)}; an MCP server takes {', '.join(WRITABLE)}."]
                for name in unknown
            }
        )
    errors: dict[str, list[str]] = {}

    def fail(key: str, message: str) -> None:
        errors.setdefault(key, []).append(message)

    given = {k: v for k, v in data.items() if k in WRITABLE or k in ALIASES}
    transport = _explicit_transport(given, fail)
    merged: dict[str, Any] = as_input(instance) if instance is not None else {}
    if instance is not None:
        switching = (transport is not None and transport != instance.transport) or any(
            given.get(k) is not None for k in _fields_of(_other(instance.transport))
        )
        if switching:  # a patch that names the other transport replaces the old transport's fields
            for key in _fields_of(instance.transport):
                if key not in given:
                    merged.pop(key, None)
    merged.update(given)
    present = {k for k in STDIO_FIELDS + HTTP_FIELDS if merged.get(k) is not None}

    if transport is None:
        has_command, has_url = "command" in present, "url" in present
        if has_command and has_url:
            fail("transport", "Give either command (a stdio server) or url (an http server), not both.")
        elif not has_command and not has_url:
            fail(
                "transport",
                'Give command (a stdio server the agent starts, e.g. "npx") or url (an http server).',
            )
        transport = Transport.HTTP if has_url and not has_command else Transport.STDIO
    if not errors:
        stray = sorted(present & set(_fields_of(_other(transport))))
        if stray:
            fail(
                stray[0],
                f"{', '.join(stray)} {'belongs' if len(stray) == 1 else 'belong'} to "
                f"{_other(transport)} servers; a {transport} server takes {', '.join(_fields_of(transport))}.",
            )
        elif transport == Transport.STDIO and "command" not in present:
            fail("command", 'A stdio server needs command, the program the agent starts (e.g. "npx").')
        elif transport == Transport.HTTP and "url" not in present:
            fail("url", 'An http server needs url, e.g. "https://mcp.example.com/mcp".')

    spec = ServerSpec(
        name=_name(merged.get("name"), fail),
        repo=_repo(merged.get("repoUrl"), fail),
        transport=transport,
        enabled=_enabled(merged.get("enabled", True), fail),
    )
    if transport == Transport.STDIO:
        spec.command = _command(merged.get("command"), fail)
        spec.args = _args(merged.get("args"), fail)
        spec.env = _string_map("env", merged.get("env"), ENV_NAME_RE, "an environment variable name", fail)
    else:
        spec.url = _url(merged.get("url"), fail)
        spec.headers = _string_map("headers", merged.get("headers"), HEADER_NAME_RE, "an HTTP header name", fail)
    if errors:
        raise InvalidServer(errors)
    return spec


def _other(transport: str) -> str:
    return Transport.HTTP if transport == Transport.STDIO else Transport.STDIO


def _fields_of(transport: str) -> tuple[str, ...]:
    return HTTP_FIELDS if transport == Transport.HTTP else STDIO_FIELDS


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return "a string" if isinstance(value, str) else type(value).__name__


def _quote_hint(value: Any) -> str:
    if isinstance(value, bool):
        return f' Write it as a string: "{str(value).lower()}".'
    if isinstance(value, int | float):
        return f' Write it as a string: "{value}".'
    return ""


def _explicit_transport(given: Mapping, fail) -> str | None:
    spellings = {k: given[k] for k in ("transport", "type") if given.get(k) is not None}
    values = set(spellings.values()) if all(isinstance(v, str) for v in spellings.values()) else None
    if values is None or any(v not in Transport.values for v in values):
        bad = next(v for v in spellings.values() if not isinstance(v, str) or v not in Transport.values)
        fail("transport", f'transport must be "stdio" or "http"; got {bad!r}.')
        return None
    if len(values) > 1:
        fail("transport", f"transport {spellings['transport']!r} and type {spellings['type']!r} disagree.")
        return None
    return values.pop() if values else None


def _name(value: Any, fail) -> str:
    if not isinstance(value, str) or not value.strip():
        fail("name", "name is required: 1–64 letters, digits, spaces, '.', '_' or '-' (e.g. \"GitHub Tools\").")
        return ""
    value = value.strip()
    if not NAME_RE.match(value):
        fail(
            "name",
            f"name {value!r} is not allowed: use 1–64 letters, digits, spaces, '.', '_' or '-' "
            '(e.g. "GitHub Tools"); it becomes the server\'s key in .mcp.json.',
        )
    return value


def _repo(value: Any, fail) -> Repo | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        fail("repoUrl", f"repoUrl must be a repository URL or null (global); got {_kind(value)}.")
        return None
    try:
        url = normalize_repo_url(value)
    except InvalidRepoUrl as exc:
        fail("repoUrl", str(exc))
        return None
    repo = Repo.objects.filter(url=url).first()
    if repo is None:
        fail(
            "repoUrl",
            f"{url} is not a connected repository; connect it first with POST /api/repos or in "
            "Settings → Repositories, or leave repoUrl out for a global server.",
        )
    return repo


def _enabled(value: Any, fail) -> bool:
    if not isinstance(value, bool):
        fail("enabled", f"enabled must be true or false; got {_kind(value)}.")
        return True
    return value


def _command(value: Any, fail) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not value.strip():
        fail("command", f'command must be a non-empty string such as "npx"; got {_kind(value)}.')
        return ""
    if len(value) > 1000:
        fail("command", "command is longer than 1000 characters; put options in args.")
    elif "{{" in value:
        fail("command", "command cannot reference secrets; use {{SECRET_NAME}} in args or env values instead.")
    return value


def _checked_string(key: str, value: str, fail) -> None:
    if len(value) > MAX_VALUE:
        fail(key.split("[")[0].split(".")[0], f"{key} is longer than {MAX_VALUE} characters.")
        return
    try:
        templating.references(value)
    except templating.InvalidReference as exc:
        fail(key.split("[")[0].split(".")[0], f"{key}: {exc}")


def _args(value: Any, fail) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        fail(
            "args",
            f'args must be a list of strings, like ["-y", "@modelcontextprotocol/server-github"]; got {_kind(value)}.',
        )
        return []
    if len(value) > MAX_ARGS:
        fail("args", f"args has {len(value)} items; at most {MAX_ARGS} are allowed.")
        return []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            fail("args", f"args[{i}] must be a string; got {_kind(item)}.{_quote_hint(item)}")
        else:
            _checked_string(f"args[{i}]", item, fail)
    return value


def _string_map(key: str, value: Any, name_re: re.Pattern, what: str, fail) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        fail(
            key,
            f'{key} must be an object of string values, like {{"NAME": "{{{{SECRET_NAME}}}}"}}; got {_kind(value)}.',
        )
        return {}
    if len(value) > MAX_ITEMS:
        fail(key, f"{key} has {len(value)} entries; at most {MAX_ITEMS} are allowed.")
        return {}
    for name, item in value.items():
        if not name_re.match(name):
            fail(key, f"{key}: {name!r} is not {what}.")
        elif not isinstance(item, str):
            fail(key, f"{key}.{name} must be a string; got {_kind(item)}.{_quote_hint(item)}")
        elif key == "headers" and ("\r" in item or "\n" in item):
            fail(key, f"{key}.{name} cannot contain line breaks.")
        else:
            _checked_string(f"{key}.{name}", item, fail)
    return dict(value)


def _url(value: Any, fail) -> str:
    if not isinstance(value, str) or not value.strip():
        fail("url", f'url must be an http(s) URL such as "https://mcp.example.com/mcp"; got {_kind(value)}.')
        return ""
    value = value.strip()
    if len(value) > 2000:
        fail("url", "url is longer than 2000 characters.")
        return value
    try:
        templating.references(value)
    except templating.InvalidReference as exc:
        fail("url", f"url: {exc}")
        return value
    # References may stand anywhere after the scheme; check the shape with placeholders filled in.
    probe = urlsplit(templating.render(value, _Placeholder()))
    if probe.scheme not in ("http", "https") or not probe.hostname:
        fail("url", f"url must start with http:// or https:// and name a host; got {value!r}.")
    return value


class _Placeholder(dict):
    def __contains__(self, key) -> bool:
        return True

    def __missing__(self, key) -> str:
        return "x"
