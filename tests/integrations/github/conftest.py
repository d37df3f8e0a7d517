"""Fixtures for the GitHub integration: the fake GitHub server and a GITHUB_TOKEN secret."""

from __future__ import annotations

import pytest

from integrations.github import etags, issues
from optio import secrets
from tests.fakes.github import fake_github  # noqa: F401 - re-exported as a fixture


@pytest.fixture(autouse=True)
def _fresh_memo():
    # Parsed bodies are memoised per process; each test starts as a fresh process would.
    etags.memo.clear()
    issues.summaries.clear()
    yield
    etags.writer.drain()  # no cache row written behind may land in the next test
    etags.memo.clear()
    issues.summaries.clear()


@pytest.fixture
def gh(fake_github):  # noqa: F811
    return fake_github


@pytest.fixture
def github_token(db, gh):
    secrets.set_secret("GITHUB_TOKEN", gh.token)
    return gh.token


@pytest.fixture
def two_repos(db, gh):
    """acme/webapp and acme/api connected, each with issues (and a PR) on the fake GitHub."""
    from optio.models import Repo

    webapp = Repo.objects.create(url="https://github.com/acme/webapp")
    api_repo = Repo.objects.create(url="https://github.com/acme/api")
    gh.add_issue(
        "acme/webapp", "Login fails on Safari", body="Steps to reproduce", labels=["bug", "ui"], assignee="alice"
    )
    gh.add_issue("acme/webapp", "Add dark mode", labels=["feature"])
    gh.add_issue("acme/webapp", "Bump Django", pull_request=True)
    gh.add_issue("acme/api", "Rate limit the login endpoint", labels=["bug"], assignee="bob")
    gh.add_issue("acme/api", "Old closed one", state="closed")
    return webapp, api_repo
