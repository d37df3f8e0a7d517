"""Shared fixtures: an authenticated API client, a connected repository, eager Celery by default."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from integrations.github import etags
from integrations.github import issues as github_issues
from optio import crypto, events
from optio import secrets as secret_service
from optio.celery import app as celery_app
from optio.models import ApiToken, Repo
from tests.fakes.github import fake_github  # noqa: F401 - a fixture: the fake GitHub server


@pytest.fixture(autouse=True, scope="session")
def _eager_celery():
    # Unit tests run Celery tasks inline; tests about real workers start their own processes.
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield


@pytest.fixture(autouse=True)
def _test_settings(settings):
    # The fake GitHub/Slack/receiver servers listen on 127.0.0.1; SSRF tests switch this off again.
    settings.OPTIO_ALLOW_PRIVATE_URLS = True
    # PBKDF2 protects real passwords, not fixtures; on a loaded CI machine it cost ~0.5 s a test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    crypto.reset_keys()
    yield
    crypto.reset_keys()


class Api:
    """A DRF test client speaking JSON with a bearer token; `.json(resp)` decodes bodies."""

    def __init__(self, client: APIClient, token: str, user):
        self.client, self.token, self.user = client, token, user

    def _call(self, method, path, data=None, **extra):
        kwargs = {}
        if data is not None:
            kwargs = {"data": json.dumps(data), "content_type": "application/json"}
        return getattr(self.client, method)(path, HTTP_AUTHORIZATION=f"Bearer {self.token}", **kwargs, **extra)

    def get(self, path, **extra):
        return self._call("get", path, **extra)

    def post(self, path, data=None, **extra):
        return self._call("post", path, data, **extra)

    def patch(self, path, data=None, **extra):
        return self._call("patch", path, data, **extra)

    def put(self, path, data=None, **extra):
        return self._call("put", path, data, **extra)

    def delete(self, path, **extra):
        return self._call("delete", path, **extra)


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_superuser("admin", "admin@example.com", "correct horse battery")


@pytest.fixture
def api(admin_user):
    _, raw = ApiToken.objects.issue(admin_user, name="test")
    return Api(APIClient(), raw, admin_user)


@pytest.fixture
def repo(db):
    return Repo.objects.create(url="https://github.com/acme/webapp")


@pytest.fixture(autouse=True)
def _no_dispatch_queued():
    # "A dispatch job is queued" lives in the cache, which outlives a test: a job one test
    # enqueued and never ran must not keep the next test's commits from enqueueing theirs.
    events._clear_flag()
    yield
    events._clear_flag()


@pytest.fixture(autouse=True)
def _fresh_github_memo():
    # The GitHub client memoises parsed bodies per process; each test starts as a fresh process would.
    etags.memo.clear()
    github_issues.summaries.clear()
    yield
    etags.writer.drain()  # no cache row written behind may land in the next test
    etags.memo.clear()
    github_issues.summaries.clear()


@pytest.fixture
def gh(fake_github):  # noqa: F811
    return fake_github


@pytest.fixture
def github_token(db, gh):
    secret_service.set_secret("GITHUB_TOKEN", gh.token)
    return gh.token
