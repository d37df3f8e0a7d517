"""POST /api/issues/assign: one issue, one task; write-back; refusals."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from integrations.github import writeback
from optio import lifecycle
from optio.models import Event, Task, TaskLog
from tests.services import require_postgres


@pytest.fixture
def issue(repo, gh, github_token):
    gh.add_issue("acme/webapp", "Warm-up issue")
    gh.add_issue("acme/webapp", "Add email validation", body="Reject addresses without an @.", labels=["bug"])
    gh.add_comment("acme/webapp", 2, "Also trim whitespace.", user="alice")
    gh.add_comment("acme/webapp", 2, "And lower-case the domain.", user="bob")
    return gh.issue("acme/webapp", 2)


SEED = {"issueUrl": "https://github.com/acme/webapp/issues/2", "repoUrl": "https://github.com/acme/webapp"}


def test_assign_as_the_seed_shows_creates_a_queued_task(api, issue, gh, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        resp = api.post("/api/issues/assign", SEED)

    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["state"] == "queued"
    assert body["title"] == "Add email validation"
    assert (body["ticketSource"], body["ticketExternalId"]) == ("github", "2")
    assert body["ticketUrl"] == "https://github.com/acme/webapp/issues/2"
    prompt = body["prompt"]
    assert prompt.index("Add email validation") < prompt.index("Reject addresses without an @.")
    assert prompt.index("## Comments") < prompt.index("alice") < prompt.index("Also trim whitespace.")
    assert prompt.index("bob") < prompt.index("And lower-case the domain.")
    task = Task.objects.get(pk=body["id"])
    assert task.created_by == api.user
    assert [e.name for e in Event.objects.filter(task=task)] == ["task.created", "task.queued"]


def test_assigning_again_returns_the_active_task_with_200(api, issue, django_capture_on_commit_callbacks):
    first = api.post("/api/issues/assign", SEED)
    again = api.post("/api/issues/assign", {"repoUrl": "https://github.com/acme/webapp", "issueNumber": 2})

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert Task.objects.count() == 1


def test_an_ended_task_lets_the_issue_be_assigned_anew(api, issue, repo):
    first = api.post("/api/issues/assign", SEED).json()
    lifecycle.cancel(Task.objects.get(pk=first["id"]))

    again = api.post("/api/issues/assign", SEED)

    assert again.status_code == 201 and again.json()["id"] != first["id"]


def test_assign_by_repo_id_and_issue_number(api, issue, repo):
    resp = api.post("/api/issues/assign", {"repoId": repo.pk, "issueNumber": 2})

    assert resp.status_code == 201
    assert resp.json()["ticketExternalId"] == "2"


def test_issue_url_alone_names_its_repository(api, issue):
    resp = api.post("/api/issues/assign", {"issueUrl": "https://github.com/ACME/WebApp/issues/2/"})

    assert resp.status_code == 201
    assert resp.json()["repoUrl"] == "https://github.com/acme/webapp"


def test_issue_url_from_another_repository_is_refused(api, issue, gh, db):
    from optio.models import Repo

    Repo.objects.create(url="https://github.com/acme/api")

    resp = api.post(
        "/api/issues/assign",
        {"issueUrl": "https://github.com/acme/api/issues/2", "repoUrl": "https://github.com/acme/webapp"},
    )

    assert resp.status_code == 400
    body = resp.json()
    assert "acme/api" in body["error"] and "acme/webapp" in body["error"]
    assert body["details"] == {"issueUrl": ["belongs to another repository"]}
    assert Task.objects.count() == 0 and gh.requests == []


@pytest.mark.parametrize(
    "payload, status, message",
    [
        ({}, 400, "Say which issue"),
        ({"issueUrl": "not a url"}, 400, "is not a GitHub issue URL"),
        ({"issueUrl": "https://github.com/acme/webapp/pull/2"}, 400, "is a pull request"),
        ({"issueUrl": "https://github.com/nobody/here/issues/1"}, 400, "is not a connected repository"),
        ({"repoUrl": "https://github.com/nobody/here", "issueNumber": 1}, 400, "is not a connected repository"),
        ({"repoUrl": "not a repo url", "issueNumber": 1}, 400, "repoUrl"),
        ({"repoId": 999999, "issueNumber": 1}, 400, "No connected repository has id 999999"),
        ({"repoUrl": "https://github.com/acme/webapp"}, 400, "Say which issue"),
        ({"repoUrl": "https://github.com/acme/webapp", "issueNumber": 0}, 400, "issueNumber"),
        ({"repoUrl": "https://github.com/acme/webapp", "issueNumber": "two"}, 400, "issueNumber"),
        ({"issueUrl": SEED["issueUrl"], "issueNumber": 3}, 400, "does not match"),
        ({"repoUrl": "https://github.com/acme/webapp", "issueNumber": 77}, 404, "has no issue #77"),
    ],
)
def test_bad_requests_are_clear_4xx(api, issue, payload, status, message):
    resp = api.post("/api/issues/assign", payload)

    assert resp.status_code == status, resp.content
    assert message in resp.json()["error"]
    assert Task.objects.count() == 0


def test_a_pull_request_number_is_refused(api, issue, gh):
    gh.add_issue("acme/webapp", "A PR", pull_request=True)

    resp = api.post("/api/issues/assign", {"repoUrl": "https://github.com/acme/webapp", "issueNumber": 3})

    assert resp.status_code == 400 and "pull request" in resp.json()["error"]


def test_a_closed_issue_is_refused(api, issue, gh):
    gh.touch("acme/webapp", 2, state="closed")

    resp = api.post("/api/issues/assign", SEED)

    assert resp.status_code == 409 and "closed" in resp.json()["error"]


def test_missing_token_is_a_400_naming_the_secret(api, repo, gh):
    resp = api.post("/api/issues/assign", SEED)

    assert resp.status_code == 400
    assert "GITHUB_TOKEN" in resp.json()["error"] and resp.json()["details"]["secret"] == "GITHUB_TOKEN"


def test_github_down_is_a_502_and_creates_nothing(api, issue, gh):
    gh.fail(503, times=None)

    resp = api.post("/api/issues/assign", SEED)

    assert resp.status_code == 502 and "HTTP 503" in resp.json()["error"]
    assert Task.objects.count() == 0


def test_rate_limit_is_a_503_with_retry_after(api, issue, gh):
    gh.secondary_rate_limit(retry_after=42)

    resp = api.post("/api/issues/assign", SEED)

    assert resp.status_code == 503
    assert resp.json()["details"]["retryAfter"] == 42


def test_writeback_labels_the_issue_and_links_the_task(api, issue, gh, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        task_id = api.post("/api/issues/assign", SEED).json()["id"]

    task = Task.objects.get(pk=task_id)
    assert "optio" in gh.issue("acme/webapp", 2).labels
    comment = gh.issue("acme/webapp", 2).comments[-1]["body"]
    assert f"http://127.0.0.1:8000/tasks/{task_id}/" in comment and task.page_url in comment
    assert task.writeback_error == ""
    assert TaskLog.objects.filter(task=task, type="writeback", metadata__ok=True).exists()


def test_writeback_off_for_the_repository_sends_nothing(api, issue, repo, gh, django_capture_on_commit_callbacks):
    repo.writeback_enabled = False
    repo.save()

    with django_capture_on_commit_callbacks(execute=True):
        assert api.post("/api/issues/assign", SEED).status_code == 201

    assert gh.requests_to("/labels") == [] and gh.requests_to("/comments", method="POST") == []


def test_failed_writeback_is_logged_on_the_task_and_not_fatal(api, issue, gh, django_capture_on_commit_callbacks):
    gh.fail(403, path="/labels", message="Resource not accessible by integration")
    gh.fail(500, path="/comments", method="POST")

    with django_capture_on_commit_callbacks(execute=True):
        resp = api.post("/api/issues/assign", SEED)

    assert resp.status_code == 201
    task = Task.objects.get(pk=resp.json()["id"])
    assert task.state == "queued"
    assert "optio` label" in task.writeback_error and "comment" in task.writeback_error
    assert "HTTP 500" in task.writeback_error
    line = TaskLog.objects.get(task=task, type="writeback")
    assert line.content == task.writeback_error and line.metadata["ok"] is False
    assert gh.token not in task.writeback_error


def test_writeback_of_a_task_whose_state_moved_keeps_the_new_state(issue, repo, gh):
    task = lifecycle.create_task(repo, "t", "p", ticket_source="github", ticket_external_id="2")
    gh.fail(500, times=None)
    stale = Task.objects.get(pk=task.pk)
    lifecycle.transition(task, "running")

    writeback.announce_assignment(str(stale.pk))

    task.refresh_from_db()
    assert task.state == "running" and task.writeback_error


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_assigns_make_one_task(issue, admin_user, gh, monkeypatch):
    require_postgres()
    from optio.models import ApiToken

    _, raw = ApiToken.objects.issue(admin_user, name="race")
    real_create = lifecycle.create_task
    both_inserting = threading.Barrier(2, timeout=10)

    def create_together(*args, **kwargs):
        both_inserting.wait()  # neither may insert before both have seen "no active task"
        return real_create(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "create_task", create_together)
    results = []

    def click():
        try:
            resp = APIClient().post("/api/issues/assign", SEED, format="json", HTTP_AUTHORIZATION=f"Bearer {raw}")
            results.append((resp.status_code, resp.json()["id"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sorted(code for code, _ in results) == [200, 201]
    assert len({task_id for _, task_id in results}) == 1
    assert Task.objects.filter(ticket_source="github", ticket_external_id="2").count() == 1
