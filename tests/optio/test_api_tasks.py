"""REST API for repositories, tasks, their lifecycle actions and their logs."""

from __future__ import annotations

import json

import pytest

from optio import lifecycle
from optio.models import Event, Repo, Task

TASK_FIELDS = {
    "id", "title", "prompt", "repoId", "repoUrl", "state", "ticketSource", "ticketExternalId", "ticketUrl",
    "prUrl", "costUsd", "error", "attentionReason", "prStatus", "writebackError", "allowedTransitions",
    "createdAt", "updatedAt", "startedAt", "finishedAt",
}  # fmt: skip


# --- repositories -------------------------------------------------------------------------


def test_connect_list_get_update_and_disconnect_a_repository(api, db):
    created = api.post("/api/repos", {"repoUrl": "git@github.com:Acme/WebApp.git", "defaultBranch": "develop"})
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["repoUrl"] == "https://github.com/acme/webapp"
    assert body["fullName"] == "acme/webapp"
    assert body["defaultBranch"] == "develop"
    assert body["writebackEnabled"] is True

    listed = api.get("/api/repos").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]
    assert api.get(f"/api/repos/{body['id']}").json()["repoUrl"] == body["repoUrl"]

    patched = api.patch(f"/api/repos/{body['id']}", {"defaultBranch": "main", "writebackEnabled": False})
    assert patched.status_code == 200
    assert (patched.json()["defaultBranch"], patched.json()["writebackEnabled"]) == ("main", False)
    renamed = api.patch(f"/api/repos/{body['id']}", {"repoUrl": "https://github.com/acme/other"})
    assert renamed.json()["repoUrl"] == "https://github.com/acme/webapp"  # the URL is the identity

    assert api.delete(f"/api/repos/{body['id']}").status_code == 204
    assert not Repo.objects.exists()


def test_a_repository_with_tasks_cannot_be_disconnected(api, repo):
    lifecycle.create_task(repo, "t", "p")
    resp = api.delete(f"/api/repos/{repo.pk}")
    assert resp.status_code == 409
    assert "still has tasks" in resp.json()["error"]
    assert Repo.objects.filter(pk=repo.pk).exists()


def test_bad_repository_updates_are_400s(api, repo):
    assert api.patch(f"/api/repos/{repo.pk}", {"defaultBranch": ""}).status_code == 400
    assert api.patch(f"/api/repos/{repo.pk}", {"writebackEnabled": "maybe"}).status_code == 400


# --- tasks --------------------------------------------------------------------------------


def test_create_and_get_a_task(api, repo):
    created = api.post("/api/tasks", {"title": "Add email validation", "prompt": "Validate", "repoUrl": repo.url})
    assert created.status_code == 201
    body = created.json()
    assert set(body) == TASK_FIELDS
    assert body["state"] == "queued"
    assert body["costUsd"] is None
    assert body["allowedTransitions"] == ["cancelled", "failed", "running"]
    assert Task.objects.get(pk=body["id"]).created_by == api.user
    assert api.get(f"/api/tasks/{body['id']}").json() == body


@pytest.fixture
def three_tasks(repo):
    other = Repo.objects.create(url="https://github.com/acme/other")
    a = lifecycle.create_task(repo, "a", "p", ticket_source="github", ticket_external_id="1")
    b = lifecycle.create_task(repo, "b", "p", ticket_source="linear", ticket_external_id="ENG-2")
    c = lifecycle.create_task(other, "c", "p")
    lifecycle.transition(b, "running")
    return a, b, c, other


def _ids(resp) -> set[str]:
    assert resp.status_code == 200, resp.content
    return {t["id"] for t in resp.json()["results"]}


def test_task_list_filters(api, repo, three_tasks):
    a, b, c, other = three_tasks
    assert _ids(api.get("/api/tasks")) == {str(a.pk), str(b.pk), str(c.pk)}
    assert _ids(api.get("/api/tasks?state=running")) == {str(b.pk)}
    assert _ids(api.get(f"/api/tasks?repo={other.pk}")) == {str(c.pk)}
    assert _ids(api.get("/api/tasks?repo=https://github.com/acme/webapp")) == {str(a.pk), str(b.pk)}
    assert _ids(api.get("/api/tasks?ticketSource=linear")) == {str(b.pk)}
    assert _ids(api.get("/api/tasks?state=queued&repo=" + str(repo.pk))) == {str(a.pk)}
    assert api.get("/api/tasks?repo=999").status_code == 400
    assert api.get("/api/tasks?repo=https://github.com/nobody/here").status_code == 400


def test_task_list_is_paginated_newest_first(api, repo):
    tasks = [lifecycle.create_task(repo, f"task {i}", "p") for i in range(5)]
    first = api.get("/api/tasks?pageSize=2").json()
    assert first["count"] == 5
    assert [t["title"] for t in first["results"]] == ["task 4", "task 3"]
    assert first["previous"] is None and "page=2" in first["next"]
    last = api.get("/api/tasks?pageSize=2&page=3").json()
    assert [t["id"] for t in last["results"]] == [str(tasks[0].pk)]
    assert last["next"] is None


def test_cancel_and_retry(api, make_task):
    queued = make_task("queued")
    resp = api.post(f"/api/tasks/{queued.pk}/cancel")
    assert resp.status_code == 200
    assert resp.json()["state"] == "cancelled"
    assert resp.json()["finishedAt"] is not None

    failed = make_task("failed", error="boom")
    resp = api.post(f"/api/tasks/{failed.pk}/retry")
    assert resp.status_code == 200
    assert (resp.json()["state"], resp.json()["error"]) == ("queued", "")

    running = make_task("running")
    resp = api.post(f"/api/tasks/{running.pk}/retry")
    assert resp.status_code == 409
    assert resp.json()["details"]["allowed"] == ["cancelled", "completed", "failed", "needs_attention", "pr_opened"]


def test_retrying_when_the_ticket_already_has_an_active_task_is_a_409(api, make_task):
    old = make_task("failed", ticket_source="github", ticket_external_id="7")
    make_task("running", ticket_source="github", ticket_external_id="7")
    resp = api.post(f"/api/tasks/{old.pk}/retry")
    assert resp.status_code == 409
    assert "already active" in resp.json()["error"]
    assert Task.objects.get(pk=old.pk).state == "failed"


def test_runner_reports_progress_through_transition(api, make_task):
    task = make_task("queued")
    assert api.post(f"/api/tasks/{task.pk}/transition", {"state": "running"}).json()["startedAt"]
    pr = "https://github.com/acme/webapp/pull/42"
    body = api.post(f"/api/tasks/{task.pk}/transition", {"state": "pr_opened", "prUrl": pr}).json()
    assert (body["state"], body["prUrl"]) == ("pr_opened", pr)
    body = api.post(f"/api/tasks/{task.pk}/transition", {"state": "needs_attention", "reason": "ci_failed"}).json()
    assert body["attentionReason"] == "ci_failed"
    body = api.post(f"/api/tasks/{task.pk}/transition", {"state": "completed", "costUsd": "0.1234"}).json()
    assert (body["state"], body["costUsd"], body["attentionReason"]) == ("completed", "0.1234", "")
    event = Event.objects.filter(task=task).last()
    assert event.data["costUsd"] == body["costUsd"]  # the API and the envelope agree on the text

    other = make_task("running")
    body = api.post(f"/api/tasks/{other.pk}/transition", {"state": "failed", "error": "agent crashed"}).json()
    assert (body["state"], body["error"]) == ("failed", "agent crashed")


@pytest.mark.parametrize(
    ("stored", "shown"), [("0.35", "0.35"), ("1", "1.00"), ("0.1234", "0.1234"), ("12.5", "12.50")]
)
def test_cost_is_a_decimal_string(api, make_task, stored, shown):
    task = make_task("completed", cost_usd=stored)
    assert api.get(f"/api/tasks/{task.pk}").json()["costUsd"] == shown


# --- logs ---------------------------------------------------------------------------------


def _post_logs(api, task, body: str, content_type: str):
    return api.client.post(
        f"/api/tasks/{task.pk}/logs", body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {api.token}"
    )


def test_logs_accept_a_json_array_ndjson_and_plain_text(api, make_task):
    task = make_task("running")
    lines = [
        {"content": "Cloning", "stream": "stdout", "type": "text"},
        {"content": "tool call", "type": "tool_use", "metadata": {"tool": "bash"}},
    ]
    resp = _post_logs(api, task, json.dumps(lines), "application/json")
    assert resp.status_code == 201
    assert resp.json() == {"appended": 2, "lastSeq": 2}
    ndjson = '{"content": "third", "stream": "stderr"}\nplain text line\n'
    assert _post_logs(api, task, ndjson, "application/x-ndjson").json() == {"appended": 2, "lastSeq": 4}
    assert _post_logs(api, task, "fifth\nsixth\n", "text/plain").json() == {"appended": 2, "lastSeq": 6}

    page = api.get(f"/api/tasks/{task.pk}/logs").json()
    assert page["count"] == 6
    assert [r["seq"] for r in page["results"]] == [1, 2, 3, 4, 5, 6]
    first = page["results"][1]
    assert set(first) == {"seq", "taskId", "timestamp", "stream", "type", "content", "metadata"}
    assert (first["type"], first["metadata"]) == ("tool_use", {"tool": "bash"})
    assert page["results"][2]["stream"] == "stderr"


def test_logs_page_by_seq(api, make_task):
    task = make_task("running")
    _post_logs(api, task, "\n".join(f"line {i}" for i in range(1, 11)), "text/plain")
    after = api.get(f"/api/tasks/{task.pk}/logs?after=7").json()
    assert [r["seq"] for r in after["results"]] == [8, 9, 10]
    paged = api.get(f"/api/tasks/{task.pk}/logs?pageSize=4&page=2").json()
    assert [r["seq"] for r in paged["results"]] == [5, 6, 7, 8]
    assert api.get(f"/api/tasks/{task.pk}/logs?after=abc").status_code == 400


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("[{", "application/json"),
        ('[{"content": "x", "metadata": "not an object"}]', "application/json"),
        ("[42]", "application/json"),
        ('[{"content": "x", "timestamp": "yesterday"}]', "application/json"),
        ('"just a string"', "application/json"),
    ],
)
def test_bad_log_lines_are_400s_naming_the_line(api, make_task, body, content_type):
    task = make_task("running")
    resp = _post_logs(api, task, body, content_type)
    assert resp.status_code == 400, resp.content
    assert "line" in resp.json()["error"].lower()
    assert not task.logs.exists()
