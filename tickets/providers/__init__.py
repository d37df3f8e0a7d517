"""Ticket sources behind one interface (`base.TicketSource`) and one registry.

Adding a source is one module and one line here.
"""

from __future__ import annotations

from tickets.providers.base import TicketSource
from tickets.providers.github import GitHubSource
from tickets.providers.linear import LinearSource

REGISTRY: dict[str, TicketSource] = {
    GitHubSource.name: GitHubSource(),
    LinearSource.name: LinearSource(),
}


def get_source(name: str) -> TicketSource:
    """The source registered under `name`; KeyError for an unknown one."""
    return REGISTRY[name]
