"""Fixtures for the GitHub integration: the fake GitHub server and a GITHUB_TOKEN secret."""

from __future__ import annotations

import pytest

from integrations.github import etags
from optio import secrets
from tests.fakes.github import fake_github  # noqa: F401 - re-exported as a fixture


@pytest.fixture(autouse=True)
def _fresh_memo():
    # Parsed bodies are memoised per process; each test starts as a fresh process would.
    etags.memo.clear()
    yield
    etags.memo.clear()


@pytest.fixture
def gh(fake_github):  # noqa: F811
    return fake_github


@pytest.fixture
def github_token(db, gh):
    secrets.set_secret("GITHUB_TOKEN", gh.token)
    return gh.token
