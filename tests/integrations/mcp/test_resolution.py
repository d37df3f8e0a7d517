"""GET /api/tasks/<id>/mcp-config and /api/repos/<id>/mcp-config: overrides, secrets, refusals."""

from __future__ import annotations

import json
import logging

from integrations.mcp import resolution
from integrations.mcp.models import MCPServer
from optio import lifecycle
from optio.models import Event, TaskLog


def _create(api, **body) -> dict:
    resp = api.post("/api/mcp-servers", body)
    assert resp.status_code == 201, resp.content
    return resp.json()


def _config(api, repo) -> dict:
    resp = api.get(f"/api/repos/{repo.pk}/mcp-config")
    assert resp.status_code == 200, resp.content
    return resp.json()


def test_seed_server_resolves_for_a_task(api, repo, seed_body, set_secret):
    set_secret("GITHUB_TOKEN", "ghp_real_value")
    _create(api, **seed_body)
    task = lifecycle.create_task(repo, "Add email validation", "Do it")
    resp = api.get(f"/api/tasks/{task.pk}/mcp-config")
    assert resp.status_code == 200, resp.content
    assert resp.json() == {
        "mcpServers": {
            "GitHub Tools": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-github"],
                "env": {"GITHUB_TOKEN": "ghp_real_value"},
            }
        }
    }
    assert resp["Cache-Control"] == "no-store"


def test_no_servers_is_an_empty_configuration(api, repo):
    assert _config(api, repo) == {"mcpServers": {}}


def test_http_server_resolves_url_and_headers(api, repo, set_secret):
    set_secret("API_TOKEN", "tok-123")
    set_secret("TENANT", "acme")
    _create(
        api,
        name="remote",
        url="https://{{TENANT}}.mcp.example.com/mcp?key={{API_TOKEN}}",
        headers={"Authorization": "Bearer {{API_TOKEN}}", "X-Static": "plain"},
    )
    assert _config(api, repo)["mcpServers"]["remote"] == {
        "type": "http",
        "url": "https://acme.mcp.example.com/mcp?key=tok-123",
        "headers": {"Authorization": "Bearer tok-123", "X-Static": "plain"},
    }


def test_repository_server_overrides_global_of_the_same_name(api, repo, other_repo, seed_body, set_secret):
    set_secret("GITHUB_TOKEN", "global-token")
    set_secret("WEBAPP_TOKEN", "webapp-token", repo)
    _create(api, **seed_body)
    _create(api, name="shared", command="shared-tool")
    _create(
        api,
        name="GitHub Tools",
        repoUrl=repo.url,
        command="docker",
        args=["run", "ghcr.io/github/github-mcp-server"],
        env={"GITHUB_PERSONAL_ACCESS_TOKEN": "{{WEBAPP_TOKEN}}"},
    )
    webapp = _config(api, repo)["mcpServers"]
    assert sorted(webapp) == ["GitHub Tools", "shared"]
    assert webapp["GitHub Tools"] == {
        "command": "docker",
        "args": ["run", "ghcr.io/github/github-mcp-server"],
        "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "webapp-token"},
    }
    # Another repository still gets the global definition.
    assert _config(api, other_repo)["mcpServers"]["GitHub Tools"]["env"] == {"GITHUB_TOKEN": "global-token"}


def test_disabled_servers_are_excluded(api, repo, set_secret):
    g = _create(api, name="off-global", command="a")
    r = _create(api, name="off-repo", command="b", repoUrl=repo.url)
    _create(api, name="on", command="c")
    api.patch(f"/api/mcp-servers/{g['id']}", {"enabled": False})
    api.patch(f"/api/mcp-servers/{r['id']}", {"enabled": False})
    assert list(_config(api, repo)["mcpServers"]) == ["on"]


def test_disabled_repository_server_turns_the_global_one_off_for_that_repository(api, repo, other_repo):
    _create(api, name="tools", command="global-tool")
    _create(api, name="tools", command="repo-tool", repoUrl=repo.url, enabled=False)
    assert _config(api, repo)["mcpServers"] == {}
    assert _config(api, other_repo)["mcpServers"]["tools"]["command"] == "global-tool"


def test_disabled_server_with_missing_secret_does_not_block(api, repo):
    _create(api, name="off", command="a", env={"T": "{{NOT_STORED}}"}, enabled=False)
    assert _config(api, repo) == {"mcpServers": {}}


def test_several_references_in_one_value(api, repo, set_secret):
    set_secret("USER", "alice")
    set_secret("PASS", "s3cret")
    set_secret("HOST", "db.internal")
    _create(
        api,
        name="db",
        command="mcp-postgres",
        args=["postgres://{{USER}}:{{PASS}}@{{HOST}}/app", "{{USER}}{{USER}}"],
        env={"DSN": "user={{ USER }} password={{PASS}}"},
    )
    entry = _config(api, repo)["mcpServers"]["db"]
    assert entry["args"] == ["postgres://alice:s3cret@db.internal/app", "alicealice"]
    assert entry["env"] == {"DSN": "user=alice password=s3cret"}


def test_secret_value_that_looks_like_a_reference_is_not_expanded_again(api, repo, set_secret):
    set_secret("OUTER", "{{INNER}}")
    set_secret("INNER", "should-not-appear")
    _create(api, name="x", command="c", args=["{{OUTER}}"])
    assert _config(api, repo)["mcpServers"]["x"]["args"] == ["{{INNER}}"]


def test_missing_secret_is_named_in_the_refusal(api, repo, set_secret):
    set_secret("PRESENT", "here")
    _create(api, name="one", command="a", env={"A": "{{MISSING_A}}", "P": "{{PRESENT}}"})
    _create(api, name="two", url="https://x.example/{{MISSING_B}}", headers={"K": "{{MISSING_A}}"})
    task = lifecycle.create_task(repo, "t", "p")
    resp = api.get(f"/api/tasks/{task.pk}/mcp-config")
    assert resp.status_code == 409, resp.content
    body = resp.json()
    assert "MISSING_A (used by one, two)" in body["error"]
    assert "MISSING_B (used by two)" in body["error"]
    assert "POST /api/secrets" in body["error"]
    assert body["details"] == {
        "missingSecrets": ["MISSING_A", "MISSING_B"],
        "servers": {"one": ["MISSING_A"], "two": ["MISSING_A", "MISSING_B"]},
    }
    assert "here" not in resp.content.decode()  # no resolved value leaks into the refusal
    assert "{{" not in resp.content.decode()


def test_repository_secret_wins_over_global(api, repo, other_repo, seed_body, set_secret):
    set_secret("GITHUB_TOKEN", "global")
    set_secret("GITHUB_TOKEN", "for-webapp", repo)
    _create(api, **seed_body)
    assert _config(api, repo)["mcpServers"]["GitHub Tools"]["env"]["GITHUB_TOKEN"] == "for-webapp"
    assert _config(api, other_repo)["mcpServers"]["GitHub Tools"]["env"]["GITHUB_TOKEN"] == "global"


def test_a_secret_of_another_repository_does_not_resolve(api, repo, other_repo, seed_body, set_secret):
    set_secret("GITHUB_TOKEN", "other-repos", other_repo)
    _create(api, **seed_body)
    resp = api.get(f"/api/repos/{repo.pk}/mcp-config")
    assert resp.status_code == 409 and resp.json()["details"]["missingSecrets"] == ["GITHUB_TOKEN"]


def test_rotated_secret_resolves_to_its_new_value(api, repo, seed_body):
    assert api.post("/api/secrets", {"name": "GITHUB_TOKEN", "value": "old-value"}).status_code == 201
    _create(api, **seed_body)
    assert _config(api, repo)["mcpServers"]["GitHub Tools"]["env"]["GITHUB_TOKEN"] == "old-value"
    assert api.post("/api/secrets", {"name": "GITHUB_TOKEN", "value": "new-value"}).status_code == 200
    assert _config(api, repo)["mcpServers"]["GitHub Tools"]["env"]["GITHUB_TOKEN"] == "new-value"


def test_secret_stored_after_the_warning_makes_it_resolve(api, repo, seed_body):
    assert _create(api, **seed_body)["missingSecrets"] == ["GITHUB_TOKEN"]
    assert api.get(f"/api/repos/{repo.pk}/mcp-config").status_code == 409
    api.post("/api/secrets", {"name": "GITHUB_TOKEN", "value": "late"})
    assert _config(api, repo)["mcpServers"]["GitHub Tools"]["env"]["GITHUB_TOKEN"] == "late"


def test_secret_values_never_appear_in_listings_logs_or_events(api, repo, seed_body, set_secret, caplog):
    value = "ghp_TopSecretValue_0123456789abcdef"
    set_secret("GITHUB_TOKEN", value)
    caplog.set_level(logging.DEBUG)
    created = _create(api, **seed_body)
    task = lifecycle.create_task(repo, "t", "p")
    assert value in api.get(f"/api/tasks/{task.pk}/mcp-config").content.decode()  # the one place it appears

    for path in (
        "/api/mcp-servers",
        f"/api/mcp-servers/{created['id']}",
        f"/api/mcp-servers?repoUrl={repo.url}",
        "/api/secrets",
        f"/api/tasks/{task.pk}",
    ):
        resp = api.get(path)
        assert resp.status_code == 200
        assert value not in resp.content.decode(), path
    patched = api.patch(f"/api/mcp-servers/{created['id']}", {"enabled": True})
    assert value not in patched.content.decode()
    assert value not in caplog.text
    assert "GitHub Tools" in caplog.text  # the fetch is logged, by server name
    for event in Event.objects.all():
        assert value not in json.dumps(event.envelope())
    assert not TaskLog.objects.filter(content__contains=value).exists()
    assert value not in json.dumps(list(MCPServer.objects.values()), default=str)


def test_unknown_task_and_repository_are_404s(api, db):
    resp = api.get("/api/tasks/00000000-0000-0000-0000-000000000000/mcp-config")
    assert resp.status_code == 404 and resp.json()["error"].startswith("No task has id")
    resp = api.get("/api/repos/999/mcp-config")
    assert resp.status_code == 404 and "No connected repository has id 999" in resp.json()["error"]


def test_effective_view_marks_overrides_and_missing_secrets(repo, other_repo, set_secret):
    set_secret("GLOBAL_ONLY", "g")
    set_secret("REPO_ONLY", "r", repo)
    MCPServer.objects.create(name="tools", command="global", env={"T": "{{GLOBAL_ONLY}}"})
    MCPServer.objects.create(name="tools", command="mine", repo=repo, env={"T": "{{REPO_ONLY}}", "M": "{{NOPE}}"})
    MCPServer.objects.create(name="off", command="x", enabled=False)
    MCPServer.objects.create(name="elsewhere", command="x", repo=other_repo)
    rows = {(c.server.name, c.server.is_global): c for c in resolution.effective(repo)}
    assert set(rows) == {("tools", True), ("tools", False), ("off", True)}
    assert rows["tools", True].status == resolution.OVERRIDDEN
    mine = rows["tools", False]
    assert mine.status == resolution.APPLIES and mine.overrides == rows["tools", True].server
    assert [(r.name, r.source) for r in mine.secrets] == [("NOPE", None), ("REPO_ONLY", "repository")]
    assert mine.missing == ["NOPE"]
    assert rows["off", True].status == resolution.DISABLED
