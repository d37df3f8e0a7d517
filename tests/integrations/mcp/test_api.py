"""POST/GET/PATCH/DELETE /api/mcp-servers: the seed body, validation, scopes, listings."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from integrations.mcp.models import MCPServer


def test_seed_body_creates_a_global_stdio_server(api, seed_body, set_secret):
    set_secret("GITHUB_TOKEN", "ghp_seedvalue")
    resp = api.post("/api/mcp-servers", seed_body)
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["name"] == "GitHub Tools"
    assert body["scope"] == "global" and body["repoUrl"] is None
    assert body["transport"] == "stdio"
    assert body["command"] == "npx"
    assert body["args"] == ["-y", "@modelcontextprotocol/server-github"]
    assert body["env"] == {"GITHUB_TOKEN": "{{GITHUB_TOKEN}}"}
    assert body["url"] is None and body["headers"] is None
    assert body["enabled"] is True
    assert body["secretRefs"] == ["GITHUB_TOKEN"]
    assert body["warnings"] == [] and body["missingSecrets"] == []
    server = MCPServer.objects.get(pk=body["id"])
    assert server.repo is None and server.env == {"GITHUB_TOKEN": "{{GITHUB_TOKEN}}"}


def test_save_with_missing_secrets_warns_naming_every_one(api, repo, set_secret):
    set_secret("PRESENT", "x")
    resp = api.post(
        "/api/mcp-servers",
        {
            "name": "tools",
            "repoUrl": repo.url,
            "command": "run",
            "args": ["--a={{FIRST_MISSING}}", "{{PRESENT}}"],
            "env": {"B": "{{SECOND_MISSING}}:{{FIRST_MISSING}}"},
        },
    )
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["missingSecrets"] == ["FIRST_MISSING", "SECOND_MISSING"]
    assert len(body["warnings"]) == 1
    assert "FIRST_MISSING" in body["warnings"][0] and "SECOND_MISSING" in body["warnings"][0]
    assert "PRESENT" not in body["warnings"][0]


def test_save_of_global_server_checks_the_global_scope(api, repo, seed_body, set_secret):
    set_secret("GITHUB_TOKEN", "only-for-one-repo", repo)
    body = api.post("/api/mcp-servers", seed_body).json()
    assert body["missingSecrets"] == ["GITHUB_TOKEN"]
    assert "not stored globally" in body["warnings"][0]


def test_pasted_token_is_flagged(api):
    resp = api.post(
        "/api/mcp-servers",
        {"name": "gh", "command": "npx", "env": {"GITHUB_TOKEN": "ghp_abcdefghijklmnopqrstuvwxyz0123456789"}},
    )
    assert resp.status_code == 201
    assert any("env.GITHUB_TOKEN looks like a literal token" in w for w in resp.json()["warnings"])


def test_http_server_from_url_and_headers(api, set_secret):
    set_secret("API_TOKEN", "t")
    resp = api.post(
        "/api/mcp-servers",
        {"name": "remote", "url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer {{API_TOKEN}}"}},
    )
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["transport"] == "http"
    assert body["url"] == "https://mcp.example.com/mcp"
    assert body["headers"] == {"Authorization": "Bearer {{API_TOKEN}}"}
    assert body["command"] is None and body["args"] is None and body["env"] is None
    assert body["secretRefs"] == ["API_TOKEN"]


@pytest.mark.parametrize("spelling", ["transport", "type"])
def test_explicit_transport_is_accepted(api, spelling):
    resp = api.post("/api/mcp-servers", {"name": "x", spelling: "http", "url": "http://127.0.0.1:9000/mcp"})
    assert resp.status_code == 201, resp.content
    assert resp.json()["transport"] == "http"


def test_repository_server_is_stored_with_the_normalised_url(api, repo):
    resp = api.post("/api/mcp-servers", {"name": "x", "command": "c", "repoUrl": "git@github.com:Acme/WebApp.git"})
    assert resp.status_code == 201, resp.content
    assert resp.json()["repoUrl"] == "https://github.com/acme/webapp"
    assert resp.json()["scope"] == "https://github.com/acme/webapp"
    assert MCPServer.objects.get().repo == repo


def _error(resp, status=400) -> dict:
    assert resp.status_code == status, resp.content
    body = resp.json()
    assert set(body) == {"error", "details"}
    return body


@pytest.mark.parametrize(
    "name",
    ["", "   ", "a" * 65, "GitHub/Tools", "tools!", "émoji", "{{X}}", 42, None],
)
def test_invalid_names_are_400s(api, name):
    body = _error(api.post("/api/mcp-servers", {"name": name, "command": "npx"}))
    assert "name" in body["details"]
    assert "letters, digits, spaces" in body["error"]


@pytest.mark.parametrize("name", ["GitHub Tools", "a", "x" * 64, "my-server_v1.2", "A B C"])
def test_valid_names(api, name):
    assert api.post("/api/mcp-servers", {"name": name, "command": "npx"}).status_code == 201


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("-y @modelcontextprotocol/server-github", "args must be a list of strings"),
        ({"a": "b"}, "args must be a list of strings"),
        (["-y", 3], "args[1] must be a string; got a number"),
        (["-y", None], "args[1] must be a string; got null"),
        (["-y", ["nested"]], "args[1] must be a string; got a list"),
    ],
)
def test_args_must_be_a_list_of_strings(api, args, expected):
    body = _error(api.post("/api/mcp-servers", {"name": "x", "command": "npx", "args": args}))
    assert expected in body["error"]
    assert "args" in body["details"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PORT": 8080}, 'env.PORT must be a string; got a number. Write it as a string: "8080".'),
        ({"DEBUG": True}, "env.DEBUG must be a string; got a boolean"),
        ({"X": None}, "env.X must be a string; got null"),
        (["A=b"], "env must be an object of string values"),
        ({"BAD-NAME": "v"}, "'BAD-NAME' is not an environment variable name"),
    ],
)
def test_env_values_must_be_strings(api, env, expected):
    body = _error(api.post("/api/mcp-servers", {"name": "x", "command": "npx", "env": env}))
    assert expected in body["error"]
    assert "env" in body["details"]


@pytest.mark.parametrize("repo_url", ["https://github.com/nobody/here", "git@github.com:nobody/here.git"])
def test_unknown_repository_is_a_400(api, db, repo_url):
    body = _error(api.post("/api/mcp-servers", {"name": "x", "command": "npx", "repoUrl": repo_url}))
    assert "https://github.com/nobody/here is not a connected repository" in body["error"]
    assert "repoUrl" in body["details"]


def test_malformed_repository_url_is_a_400(api, db):
    body = _error(api.post("/api/mcp-servers", {"name": "x", "command": "npx", "repoUrl": "not a url"}))
    assert "repoUrl" in body["details"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"name": "x"}, "Give command"),
        ({"name": "x", "command": "npx", "url": "https://a.example/mcp"}, "not both"),
        ({"name": "x", "transport": "sse", "url": "https://a.example/mcp"}, 'transport must be "stdio" or "http"'),
        ({"name": "x", "transport": "http", "type": "stdio", "url": "https://a"}, "disagree"),
        ({"name": "x", "transport": "stdio", "url": "https://a.example/mcp"}, "url belongs to http servers"),
        ({"name": "x", "transport": "http", "command": "npx"}, "command belongs to stdio servers"),
        ({"name": "x", "command": "npx", "headers": {"A": "b"}}, "headers belongs to http servers"),
        ({"name": "x", "url": "https://a.example/mcp", "args": ["a"]}, "args belongs to stdio servers"),
        ({"name": "x", "url": "ftp://a.example/mcp"}, "url must start with http:// or https://"),
        ({"name": "x", "url": "https://"}, "name a host"),
        ({"name": "x", "command": ""}, "command must be a non-empty string"),
        ({"name": "x", "command": "{{BIN}}"}, "command cannot reference secrets"),
        ({"name": "x", "command": "npx", "args": ["{{GITHUB-TOKEN}}"]}, "is not a secret reference"),
        ({"name": "x", "command": "npx", "env": {"A": "{{A"}}, "unclosed"),
        ({"name": "x", "url": "https://a.example/{{bad name}}"}, "is not a secret reference"),
        ({"name": "x", "url": "https://a.example", "headers": {"Bad Header": "v"}}, "is not an HTTP header name"),
        ({"name": "x", "url": "https://a.example", "headers": {"A": "x\r\nInjected: 1"}}, "line breaks"),
        ({"name": "x", "command": "npx", "enabled": "yes"}, "enabled must be true or false"),
        ({"name": "x", "command": "npx", "agrs": ["-y"]}, "Unknown field agrs"),
    ],
)
def test_bad_definitions_are_clear_400s(api, db, payload, expected):
    body = _error(api.post("/api/mcp-servers", payload))
    assert expected in body["error"]
    assert not MCPServer.objects.exists()


def test_body_that_is_not_an_object_is_a_400(api, db):
    body = _error(api.post("/api/mcp-servers", ["GitHub Tools"]))
    assert "JSON object" in body["error"]


def test_unparseable_body_is_a_400(api, db):
    resp = api.client.post(
        "/api/mcp-servers", data="{not json", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api.token}"
    )
    _error(resp)


def test_name_is_unique_within_its_scope_409(api, repo, other_repo, seed_body):
    first = api.post("/api/mcp-servers", seed_body).json()["id"]
    body = _error(api.post("/api/mcp-servers", seed_body), 409)
    assert 'named "GitHub Tools" already exists globally' in body["error"]
    assert body["details"]["existingId"] == first
    # The same name in a repository scope is a different server (an override), once per repository.
    assert api.post("/api/mcp-servers", {**seed_body, "repoUrl": repo.url}).status_code == 201
    assert api.post("/api/mcp-servers", {**seed_body, "repoUrl": other_repo.url}).status_code == 201
    body = _error(api.post("/api/mcp-servers", {**seed_body, "repoUrl": repo.url}), 409)
    assert f"already exists for {repo.url}" in body["error"]


def test_listing_filters_by_scope_and_repository(api, repo, other_repo):
    api.post("/api/mcp-servers", {"name": "g", "command": "c"})
    api.post("/api/mcp-servers", {"name": "r1", "command": "c", "repoUrl": repo.url})
    api.post("/api/mcp-servers", {"name": "r2", "command": "c", "repoUrl": other_repo.url})

    def names(query=""):
        resp = api.get("/api/mcp-servers" + query)
        assert resp.status_code == 200, resp.content
        return sorted(s["name"] for s in resp.json()["results"])

    assert names() == ["g", "r1", "r2"]
    assert names("?scope=global") == ["g"]
    assert names("?scope=repository") == ["r1", "r2"]
    assert names("?repoUrl=https://github.com/Acme/WebApp.git") == ["r1"]
    assert api.get("/api/mcp-servers?pageSize=1").json()["count"] == 3


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?scope=everything", 'scope must be "global" or "repository"'),
        ("?repoUrl=https://github.com/nobody/here", "is not a connected repository"),
        ("?repoUrl=nonsense", "not a repository URL"),
        ("?scope=global&repoUrl=https://github.com/acme/webapp", "not both"),
    ],
)
def test_bad_listing_filters_are_400s(api, repo, query, expected):
    assert expected in _error(api.get("/api/mcp-servers" + query))["error"]


def test_get_patch_delete_one_server(api, repo, seed_body, set_secret):
    server_id = api.post("/api/mcp-servers", seed_body).json()["id"]
    assert api.get(f"/api/mcp-servers/{server_id}").json()["name"] == "GitHub Tools"

    resp = api.patch(f"/api/mcp-servers/{server_id}", {"enabled": False, "args": ["-y", "pkg@2"]})
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["enabled"] is False and body["args"] == ["-y", "pkg@2"]
    assert body["command"] == "npx" and body["env"] == {"GITHUB_TOKEN": "{{GITHUB_TOKEN}}"}  # untouched
    assert body["missingSecrets"] == ["GITHUB_TOKEN"]

    assert api.delete(f"/api/mcp-servers/{server_id}").status_code == 204
    assert _error(api.get(f"/api/mcp-servers/{server_id}"), 404)["error"].startswith("No MCP server has id")


def test_patch_can_switch_transport_and_scope(api, repo, seed_body):
    server_id = api.post("/api/mcp-servers", seed_body).json()["id"]
    body = api.patch(f"/api/mcp-servers/{server_id}", {"url": "https://mcp.example.com/mcp"}).json()
    assert body["transport"] == "http" and body["command"] is None and body["headers"] == {}
    body = api.patch(f"/api/mcp-servers/{server_id}", {"repoUrl": repo.url}).json()
    assert body["scope"] == repo.url
    server = MCPServer.objects.get(pk=server_id)
    assert (server.command, server.args, server.env) == ("", [], {})


def test_patch_accepts_what_get_returned(api, seed_body):
    server_id = api.post("/api/mcp-servers", seed_body).json()["id"]
    current = api.get(f"/api/mcp-servers/{server_id}").json()
    current["args"] = ["-y", "other"]
    resp = api.patch(f"/api/mcp-servers/{server_id}", current)
    assert resp.status_code == 200, resp.content
    assert resp.json()["args"] == ["-y", "other"]


def test_invalid_patch_changes_nothing(api, seed_body):
    server_id = api.post("/api/mcp-servers", seed_body).json()["id"]
    body = _error(api.patch(f"/api/mcp-servers/{server_id}", {"env": {"GITHUB_TOKEN": 1}, "name": "renamed"}))
    assert "env.GITHUB_TOKEN must be a string" in body["error"]
    assert MCPServer.objects.get(pk=server_id).name == "GitHub Tools"


def test_rename_into_a_taken_name_is_409(api, seed_body):
    api.post("/api/mcp-servers", seed_body)
    other = api.post("/api/mcp-servers", {"name": "other", "command": "c"}).json()["id"]
    assert _error(api.patch(f"/api/mcp-servers/{other}", {"name": "GitHub Tools"}), 409)


def test_put_is_not_offered(api, seed_body):
    server_id = api.post("/api/mcp-servers", seed_body).json()["id"]
    assert api.put(f"/api/mcp-servers/{server_id}", seed_body).status_code == 405


@pytest.mark.parametrize(
    "path",
    [
        "/api/mcp-servers",
        "/api/mcp-servers/1",
        "/api/tasks/00000000-0000-0000-0000-000000000000/mcp-config",
        "/api/repos/1/mcp-config",
    ],
)
def test_every_route_needs_a_token(db, path):
    client = APIClient()
    assert client.get(path).status_code == 401
    assert client.get(path, HTTP_AUTHORIZATION="Bearer optio_wrong").status_code == 401


def test_deleting_a_repository_deletes_its_servers(api, repo):
    api.post("/api/mcp-servers", {"name": "r", "command": "c", "repoUrl": repo.url})
    assert api.delete(f"/api/repos/{repo.pk}").status_code == 204
    assert not MCPServer.objects.exists()
