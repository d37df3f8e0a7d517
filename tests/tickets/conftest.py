"""Fixtures for ticket providers: fake Linear and fake GitHub with a token, and provider makers."""

from __future__ import annotations

import pytest

from optio import secrets
from optio.models import Repo
from tests.fakes.linear import fake_linear  # noqa: F401 - re-exported as a fixture
from tickets import services

LINEAR_KEY = "lin_api_test_key"


@pytest.fixture
def linear(fake_linear):  # noqa: F811
    return fake_linear


@pytest.fixture
def team(linear):
    return linear.add_team("ENG", "Engineering")


@pytest.fixture
def gh(fake_github, db):  # noqa: F811
    secrets.set_secret("GITHUB_TOKEN", fake_github.token)
    return fake_github


@pytest.fixture
def webapp(db):
    return Repo.objects.create(url="https://github.com/acme/webapp")


@pytest.fixture
def make_provider(db):
    def make(source: str, **config):
        return services.create_provider(source, config).provider

    return make


@pytest.fixture
def linear_provider(make_provider, linear, team, webapp):
    return make_provider("linear", apiKey=LINEAR_KEY, teamId=team.id, repoUrl=webapp.url)
