"""The one small interface every ticket source implements.

A source knows three things: how to validate its config (and which keys are credentials),
how to describe its scope in one line, and how to fetch matching open tickets page by page,
each page carrying the cursor to store once its tasks are written. The sync engine
(`tickets.sync`) does everything else: locking, dedupe, task creation, failure accounting.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar


class ConfigError(ValueError):
    """A provider config that cannot be used. `details` maps field names to messages."""

    def __init__(self, message: str, details: dict | None = None):
        self.details = details or {}
        super().__init__(message)


class SourceError(Exception):
    """Fetching from the remote failed. `str(exc)` is a sentence a person can act on.

    `kind` is one of: bad_credentials, forbidden, not_found, rate_limited, unavailable,
    invalid_request, config, error. `retry_after` (rate limits) defers the next sync.
    """

    def __init__(self, message: str, kind: str = "error", retry_after: datetime | None = None):
        self.kind = kind
        self.retry_after = retry_after
        super().__init__(message)


@dataclass
class Comment:
    author: str
    body: str
    created_at: str = ""


@dataclass
class Ticket:
    external_id: str  # GitHub: the issue number; Linear: the identifier (ENG-123)
    title: str
    body: str
    url: str
    # The repository as the ticket names it: a URL, or `owner/name` matched against connected
    # repositories; None when it names none (then `skip_reason` says why).
    repo: str | None
    updated_at: str = ""
    labels: list[str] = field(default_factory=list)
    # None means "not fetched yet": the source's `complete()` fetches them for new tickets only.
    comments: list[Comment] | None = None
    # Why the ticket cannot become a task even before the engine looks at it (e.g. no repository).
    skip_reason: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class Batch:
    """One page of tickets and the cursor to store in the same transaction as their tasks."""

    tickets: list[Ticket]
    cursor: dict
    requests: int = 1
    not_modified: bool = False  # answered from the conditional-request cache (HTTP 304)


@dataclass(frozen=True)
class FormField:
    """One input of the Settings form for a source; `kind`: text, lines, csv or secret."""

    key: str
    label: str
    kind: str = "text"
    required: bool = False
    help: str = ""
    placeholder: str = ""


@dataclass
class Cleaned:
    config: dict
    credentials: dict[str, str]
    repo_urls: list[str]  # repositories the config names; the engine connects them


@dataclass
class FetchContext:
    provider_id: int | None
    config: dict
    credentials: dict[str, str]


class TicketSource(ABC):
    name: ClassVar[str]  # the registry key, stored as Task.ticket_source
    label: ClassVar[str]
    credential_keys: ClassVar[tuple[str, ...]] = ()  # config keys moved into encrypted storage
    required_credentials: ClassVar[tuple[str, ...]] = ()
    # True when an external id is only unique within one repository (GitHub issue numbers).
    ids_per_repo: ClassVar[bool] = True
    # The Settings page builds its add/edit form from these.
    form_fields: ClassVar[tuple[FormField, ...]] = ()

    @abstractmethod
    def clean(self, config: dict, credentials: dict[str, str]) -> Cleaned:
        """Validate `config` (credential keys already split out into `credentials`), or raise ConfigError."""

    @abstractmethod
    def describe(self, config: dict) -> str:
        """The provider's scope in one line, for lists."""

    @abstractmethod
    def fetch(self, ctx: FetchContext, cursor: dict) -> Iterator[Batch]:
        """Yield pages of open, matching tickets changed since `cursor` (all of them for `{}`).

        Raise SourceError on failure; the pages already yielded stay committed.
        """

    def carry_cursor(self, old_config: dict, new_config: dict, cursor: dict) -> dict:
        """The cursor to keep after a config change; by default none: the next sync starts over,
        so tickets that match only under the new filters are picked up."""
        return {} if old_config != new_config else cursor

    def complete(self, ctx: FetchContext, ticket: Ticket) -> Ticket:
        """Fetch what the prompt needs beyond the list (comments); called only for new tickets."""
        if ticket.comments is None:
            ticket.comments = []
        return ticket

    def prompt(self, ticket: Ticket) -> str:
        """The task prompt: the ticket's title, its description and its comments."""
        parts = [ticket.title, "", (ticket.body or "").strip() or "(no description)"]
        if ticket.comments:
            parts += ["", "## Comments", ""]
            for c in ticket.comments:
                when = f" ({c.created_at[:10]})" if c.created_at else ""
                parts += [f"**{c.author}**{when}:", c.body.strip(), ""]
        parts += ["", f"Source: {ticket.url}"]
        return "\n".join(parts).strip() + "\n"


def split_credentials(source: TicketSource, config: dict) -> tuple[dict, dict[str, str]]:
    """Take the credential keys out of a submitted config."""
    config = dict(config)
    credentials = {}
    for key in source.credential_keys:
        if key in config:
            credentials[key] = config.pop(key)
    return config, credentials
