from __future__ import annotations

import copy

import pytest

from optio import secrets
from optio.models import Repo

# The seed's example body, exactly as a user would send it.
SEED_BODY = {
    "name": "GitHub Tools",
    "command": "npx",
    "args": ["-y", "@modelcontextprotocol/server-github"],
    "env": {"GITHUB_TOKEN": "{{GITHUB_TOKEN}}"},
}


@pytest.fixture
def seed_body() -> dict:
    return copy.deepcopy(SEED_BODY)


@pytest.fixture
def other_repo(db) -> Repo:
    return Repo.objects.create(url="https://github.com/acme/api")


@pytest.fixture
def set_secret(db):
    """set_secret(name, value, repo=None): store a secret the way POST /api/secrets does."""

    def _set(name: str, value: str, repo: Repo | None = None):
        return secrets.set_secret(name, value, repo)[0]

    return _set
