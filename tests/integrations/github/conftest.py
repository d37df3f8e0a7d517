"""Fixtures for the GitHub integration (the fake server, `gh` and `github_token` live in tests/conftest.py)."""

from __future__ import annotations

import pytest


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
