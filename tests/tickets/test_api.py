"""The ticket providers API: the seed's bodies, validation, credentials never returned, sync and preview."""

from __future__ import annotations

import json

import pytest

from optio import lifecycle
from optio.models import Repo, Task
from tickets.models import TicketProvider

from .conftest import LINEAR_KEY

SEED_GITHUB = {"source": "github", "config": {"repos": ["https://github.com/acme/webapp"], "labels": ["optio"]}}


def seed_linear(team_id: str = "9cfb482a-81e3-4154-b5b9-2c805e70a02d") -> dict:
    return {
        "source": "linear",
        "config": {"apiKey": LINEAR_KEY, "teamId": team_id, "repoUrl": "https://github.com/acme/webapp"},
    }


def test_the_seed_github_body_creates_a_provider_and_connects_its_repository(api, db):
    resp = api.post("/api/tickets/providers", SEED_GITHUB)
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["source"] == "github" and body["enabled"] is True
    assert body["config"] == {"repos": ["https://github.com/acme/webapp"], "labels": ["optio"], "assignee": None}
    assert body["connectedRepos"] == ["https://github.com/acme/webapp"]
    assert Repo.objects.filter(url="https://github.com/acme/webapp").exists()
    assert body["scope"] == "acme/webapp · labels optio"
    for field in ("lastSyncAt", "lastError", "lastErrorAt", "consecutiveFailures", "disabledReason", "skippedTickets"):
        assert field in body


def test_the_seed_linear_body_creates_a_provider_and_keeps_the_key_out_of_config(api, repo):
    resp = api.post("/api/tickets/providers", seed_linear())
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["config"] == {"teamId": "9cfb482a-81e3-4154-b5b9-2c805e70a02d", "repoUrl": repo.url}
    assert body["credentials"] == ["apiKey"]
    assert body["connectedRepos"] == []  # already connected
    provider = TicketProvider.objects.get()
    assert "apiKey" not in provider.config
    assert LINEAR_KEY not in provider.credentials_encrypted  # encrypted at rest
    assert provider.get_credentials() == {"apiKey": LINEAR_KEY}


def test_credentials_never_appear_in_any_response(api, linear, team, gh):
    github_token = "ghp_providersecret0123456789"
    bodies = []
    r = api.post("/api/tickets/providers", seed_linear(team.id))
    bodies.append(r)
    linear_id = r.json()["id"]
    r = api.post("/api/tickets/providers", {**SEED_GITHUB, "config": {**SEED_GITHUB["config"], "token": github_token}})
    bodies.append(r)
    github_id = r.json()["id"]
    linear.add_issue(team, "Something to preview")
    for pk in (linear_id, github_id):
        bodies += [
            api.get(f"/api/tickets/providers/{pk}"),
            api.patch(f"/api/tickets/providers/{pk}", {"enabled": True}),
            api.post(f"/api/tickets/providers/{pk}/preview"),
            api.post("/api/tickets/sync", {"providerId": pk}),
            api.get(f"/api/tickets/providers/{pk}"),  # after a sync, with its status and errors
        ]
    bodies += [
        api.patch(f"/api/tickets/providers/{linear_id}", {"config": {"apiKey": "lin_api_rotated"}}),
        api.patch(f"/api/tickets/providers/{github_id}", {"config": {"token": "ghp_rotated_value"}}),
        api.get("/api/tickets/providers"),
        api.post("/api/tickets/sync"),
        api.post("/api/tickets/providers", {"source": "linear", "config": {"apiKey": "lin_api_x", "teamId": 5}}),
        api.get("/api/tasks"),
        api.get("/api/schema"),
    ]
    for resp in bodies:
        assert resp.status_code in (200, 201, 202, 400, 502), resp.content  # 502: the preview's GitHub call fails
        text = resp.content.decode()
        for secret in (LINEAR_KEY, github_token, "lin_api_rotated", "ghp_rotated_value", "lin_api_x"):
            assert secret not in text, (resp.request["PATH_INFO"], text[:300])
    assert api.get(f"/api/tickets/providers/{github_id}").json()["credentials"] == ["token"]


@pytest.mark.parametrize(
    "body, says",
    [
        ({"source": "jira", "config": {}}, '"jira" is not a ticket source'),
        ({"source": "github"}, "config"),
        ({"source": "github", "config": []}, "config must be a JSON object"),
        ({"source": "github", "config": {}}, "repos must list at least one repository URL"),
        ({"source": "github", "config": {"repos": ["not a url"]}}, "expected https://host/owner/name"),
        ({"source": "github", "config": {"repos": ["https://github.com/a/b"], "label": ["x"]}}, "do not take label"),
        ({"source": "github", "config": {"repos": ["https://github.com/a/b"], "labels": "x,y", "assignee": "a b"}},
         "assignee must be a GitHub login"),
        ({"source": "github", "config": {"repos": ["https://github.com/a/b"], "labels": [1]}}, "labels must be a list"),
        ({"source": "linear", "config": {"teamId": "x"}}, "apiKey is required"),
        ({"source": "linear", "config": {"apiKey": "Bearer lin_api_x"}}, "without 'Bearer'"),
        ({"source": "linear", "config": {"apiKey": "lin_api_x", "repoUrl": "nope"}}, "repoUrl"),
    ],
)  # fmt: skip
def test_bad_configs_are_a_400_with_a_sentence_and_details(api, db, body, says):
    resp = api.post("/api/tickets/providers", body)
    assert resp.status_code == 400, resp.content
    data = resp.json()
    assert says in data["error"]
    assert isinstance(data["details"], dict)
    assert not TicketProvider.objects.exists()


def test_patch_merges_config_resets_the_cursor_and_keeps_the_key(api, repo):
    pk = api.post("/api/tickets/providers", seed_linear()).json()["id"]
    TicketProvider.objects.filter(pk=pk).update(cursor={"updatedAfter": "2025-01-01T00:00:00.000Z"})
    resp = api.patch(f"/api/tickets/providers/{pk}", {"config": {"labels": ["optio"], "teamId": None}})
    assert resp.status_code == 200, resp.content
    assert resp.json()["config"] == {"labels": ["optio"], "repoUrl": repo.url}
    provider = TicketProvider.objects.get(pk=pk)
    assert provider.cursor == {}  # new filters: the next sync starts over
    assert provider.get_credentials() == {"apiKey": LINEAR_KEY}


def test_patch_replaces_a_credential_and_null_removes_an_optional_one(api, db):
    config = {**SEED_GITHUB["config"], "token": "ghp_first"}
    pk = api.post("/api/tickets/providers", {"source": "github", "config": config}).json()["id"]
    api.patch(f"/api/tickets/providers/{pk}", {"config": {"token": "ghp_second"}})
    assert TicketProvider.objects.get(pk=pk).get_credentials() == {"token": "ghp_second"}
    resp = api.patch(f"/api/tickets/providers/{pk}", {"config": {"token": None}})
    assert resp.json()["credentials"] == []
    # the Linear key is required, so it cannot be removed
    lin = api.post("/api/tickets/providers", seed_linear()).json()["id"]
    resp = api.patch(f"/api/tickets/providers/{lin}", {"config": {"apiKey": None}})
    assert resp.status_code == 400 and "apiKey is required" in resp.json()["error"]


def test_patch_cannot_change_the_source(api, db):
    pk = api.post("/api/tickets/providers", SEED_GITHUB).json()["id"]
    resp = api.patch(f"/api/tickets/providers/{pk}", {"source": "linear"})
    assert resp.status_code == 400 and "cannot change" in resp.json()["error"]


def test_re_enabling_clears_the_failure_state(api, db):
    pk = api.post("/api/tickets/providers", SEED_GITHUB).json()["id"]
    TicketProvider.objects.filter(pk=pk).update(
        enabled=False, consecutive_failures=5, last_error="boom", last_error_kind="unavailable",
        disabled_reason="Disabled after 5 failed syncs in a row.",
    )  # fmt: skip
    listed = api.get("/api/tickets/providers").json()["results"][0]
    assert (listed["enabled"], listed["consecutiveFailures"], listed["lastError"]) == (False, 5, "boom")
    assert listed["disabledReason"].startswith("Disabled after 5")
    body = api.patch(f"/api/tickets/providers/{pk}", {"enabled": True}).json()
    assert (body["enabled"], body["consecutiveFailures"], body["lastError"], body["disabledReason"]) == (
        True, 0, None, None,
    )  # fmt: skip


def test_delete_removes_the_provider_and_keeps_its_tasks(api, repo):
    pk = api.post("/api/tickets/providers", SEED_GITHUB).json()["id"]
    lifecycle.create_task(repo, "t", "p", ticket_source="github", ticket_external_id="1")
    assert api.delete(f"/api/tickets/providers/{pk}").status_code == 204
    assert api.get(f"/api/tickets/providers/{pk}").status_code == 404
    assert Task.objects.count() == 1


def test_sync_runs_every_enabled_provider_or_the_one_asked_for(api, linear, team, repo):
    linear.add_issue(team, "From Linear")
    first = api.post("/api/tickets/providers", seed_linear(team.id)).json()["id"]
    second = api.post("/api/tickets/providers", {**seed_linear(team.id), "enabled": False}).json()["id"]
    resp = api.post("/api/tickets/sync")
    assert resp.status_code == 202 and resp.json() == {"queued": [first]}
    assert Task.objects.count() == 1  # Celery is eager in tests: the sync ran
    assert api.post("/api/tickets/sync", {"providerId": first}).json() == {"queued": [first]}
    resp = api.post("/api/tickets/sync", {"providerId": second})
    assert resp.status_code == 409 and "disabled" in resp.json()["error"]
    assert api.post("/api/tickets/sync", {"providerId": 999}).status_code == 404
    assert api.post("/api/tickets/sync", {"providerId": "x"}).status_code == 400
    assert Task.objects.count() == 1


def test_preview_lists_what_a_sync_would_do_without_creating_tasks(api, linear, team, repo):
    had = linear.add_issue(team, "Already a task")
    linear.add_issue(team, "Would be created")
    orphan = linear.add_issue(team, "Unconnected", labels=["repo:acme/elsewhere"])
    existing = lifecycle.create_task(repo, "x", "p", ticket_source="linear", ticket_external_id=had.identifier)
    pk = api.post("/api/tickets/providers", seed_linear(team.id)).json()["id"]
    resp = api.post(f"/api/tickets/providers/{pk}/preview")
    assert resp.status_code == 200, resp.content
    body = resp.json()
    by_title = {t["title"]: t for t in body["tickets"]}
    assert by_title["Would be created"]["action"] == "create"
    assert by_title["Would be created"]["repoUrl"] == repo.url
    assert by_title["Already a task"]["task"] == {"id": str(existing.pk), "state": "queued"}
    assert by_title["Unconnected"]["action"] == "skip" and "not a connected" in by_title["Unconnected"]["reason"]
    assert by_title["Unconnected"]["externalId"] == orphan.identifier
    assert (body["count"], body["wouldCreate"], body["truncated"]) == (3, 1, False)
    assert Task.objects.count() == 1
    assert TicketProvider.objects.get(pk=pk).cursor == {}


def test_preview_of_a_failing_provider_is_a_502_with_the_reason(api, linear, repo):
    config = {"apiKey": "lin_api_wrong", "repoUrl": repo.url}
    pk = api.post("/api/tickets/providers", {"source": "linear", "config": config}).json()["id"]
    resp = api.post(f"/api/tickets/providers/{pk}/preview")
    assert resp.status_code == 502
    assert resp.json()["details"] == {"kind": "bad_credentials"}
    assert "Linear rejected the API key" in resp.json()["error"]
    assert TicketProvider.objects.get(pk=pk).consecutive_failures == 0  # a preview is not a sync


def test_every_endpoint_needs_the_token(client, db):
    pk = TicketProvider.objects.create(source="github", config={"repos": ["https://github.com/a/b"]}).pk
    calls = [
        ("get", "/api/tickets/providers"),
        ("post", "/api/tickets/providers"),
        ("get", f"/api/tickets/providers/{pk}"),
        ("patch", f"/api/tickets/providers/{pk}"),
        ("delete", f"/api/tickets/providers/{pk}"),
        ("post", f"/api/tickets/providers/{pk}/preview"),
        ("post", "/api/tickets/sync"),
    ]
    for method, path in calls:
        kwargs = {} if method == "get" else {"data": json.dumps({}), "content_type": "application/json"}
        resp = getattr(client, method)(path, **kwargs)
        assert resp.status_code == 401, (method, path)
        assert "API token" in resp.json()["error"]
    assert TicketProvider.objects.filter(pk=pk).exists()
