"""Settings → MCP servers: lists, the add/edit form, delete, the effective configuration."""

from __future__ import annotations

import pytest

from integrations.mcp.models import MCPServer


@pytest.fixture
def browser_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_page_needs_a_login(client, db):
    resp = client.get("/settings/mcp/")
    assert resp.status_code == 302 and resp["Location"].startswith("/login/")


def test_page_lists_global_and_repository_servers(browser_client, repo, set_secret):
    set_secret("GITHUB_TOKEN", "ghp_value_never_shown_0123456789")
    MCPServer.objects.create(
        name="GitHub Tools", command="npx", args=["-y", "srv"], env={"GITHUB_TOKEN": "{{GITHUB_TOKEN}}"}
    )
    MCPServer.objects.create(name="Docs", repo=repo, transport="http", url="https://docs.example/mcp")
    html = browser_client.get("/settings/mcp/").content.decode()
    assert "GitHub Tools" in html and "npx -y srv" in html
    assert "<code>GITHUB_TOKEN</code>" in html
    assert "ghp_value_never_shown" not in html
    repo_section = html.split('id="mcp-repo-')[1]
    assert "Docs" in repo_section and "https://docs.example/mcp" in repo_section
    assert f"/settings/mcp/new/?repo={repo.pk}" in html
    assert f"/settings/mcp/repos/{repo.pk}/" in html


def test_add_a_global_server_with_the_form(browser_client, db):
    resp = browser_client.post(
        "/settings/mcp/new/",
        {
            "name": "GitHub Tools",
            "repo": "",
            "transport": "stdio",
            "command": "npx",
            "args": "-y\n@modelcontextprotocol/server-github\n",
            "env": "GITHUB_TOKEN={{GITHUB_TOKEN}}",
            "url": "ignored for stdio",
            "enabled": "on",
        },
        follow=True,
    )
    assert resp.status_code == 200
    server = MCPServer.objects.get()
    assert (server.name, server.repo, server.command) == ("GitHub Tools", None, "npx")
    assert server.args == ["-y", "@modelcontextprotocol/server-github"]
    assert server.env == {"GITHUB_TOKEN": "{{GITHUB_TOKEN}}"}
    html = resp.content.decode()
    assert "Saved MCP server" in html
    assert "GITHUB_TOKEN is not stored globally" in html  # the save warning reaches the page


def test_add_a_repository_http_server(browser_client, repo):
    resp = browser_client.post(
        "/settings/mcp/new/",
        {
            "name": "remote",
            "repo": str(repo.pk),
            "transport": "http",
            "url": "https://mcp.example.com/mcp",
            "headers": "Authorization: Bearer {{API_TOKEN}}",
            "enabled": "on",
        },
    )
    assert resp.status_code == 302
    server = MCPServer.objects.get()
    assert server.repo == repo and server.transport == "http"
    assert server.headers == {"Authorization": "Bearer {{API_TOKEN}}"}


def test_form_errors_are_shown_with_the_submitted_text(browser_client, db):
    resp = browser_client.post(
        "/settings/mcp/new/",
        {"name": "bad/name", "transport": "stdio", "command": "npx", "env": "NO_EQUALS_SIGN"},
    )
    assert resp.status_code == 400
    html = resp.content.decode()
    assert "env line 1 should look like" in html
    assert 'value="bad/name"' in html
    resp = browser_client.post("/settings/mcp/new/", {"name": "bad/name", "transport": "stdio", "command": "npx"})
    assert resp.status_code == 400 and "is not allowed" in resp.content.decode()
    assert not MCPServer.objects.exists()


def test_duplicate_name_is_shown_on_the_form(browser_client, db):
    MCPServer.objects.create(name="dup", command="a")
    resp = browser_client.post("/settings/mcp/new/", {"name": "dup", "transport": "stdio", "command": "b"})
    assert resp.status_code == 400 and "already exists globally" in resp.content.decode()


def test_edit_form_round_trips_a_server(browser_client, repo):
    server = MCPServer.objects.create(
        name="x", command="npx", args=["multi\nline", ""], env={"A": "{{B}}"}, repo=repo, enabled=False
    )
    html = browser_client.get(f"/settings/mcp/{server.pk}/").content.decode()
    assert "[&quot;multi\\nline&quot;, &quot;&quot;]" in html  # args that lines cannot hold are shown as JSON
    resp = browser_client.post(
        f"/settings/mcp/{server.pk}/",
        {"name": "x", "repo": str(repo.pk), "transport": "stdio", "command": "npx",
         "args": '["multi\\nline", ""]', "env": "A={{B}}"},
    )  # fmt: skip
    assert resp.status_code == 302
    server.refresh_from_db()
    assert server.args == ["multi\nline", ""] and server.env == {"A": "{{B}}"} and not server.enabled


def test_edit_can_switch_transport(browser_client, db):
    server = MCPServer.objects.create(name="x", command="npx", args=["a"])
    resp = browser_client.post(
        f"/settings/mcp/{server.pk}/",
        {"name": "x", "transport": "http", "url": "https://a.example/mcp", "command": "npx", "enabled": "on"},
    )
    assert resp.status_code == 302
    server.refresh_from_db()
    assert (server.transport, server.url, server.command, server.args) == ("http", "https://a.example/mcp", "", [])


def test_delete_with_and_without_htmx(browser_client, db):
    a = MCPServer.objects.create(name="a", command="x")
    b = MCPServer.objects.create(name="b", command="x")
    assert browser_client.get(f"/settings/mcp/{a.pk}/delete/").status_code == 405
    resp = browser_client.post(f"/settings/mcp/{a.pk}/delete/", HTTP_HX_REQUEST="true")
    assert resp.status_code == 200 and resp.content == b""
    resp = browser_client.post(f"/settings/mcp/{b.pk}/delete/")
    assert resp.status_code == 302
    assert not MCPServer.objects.exists()


def test_effective_configuration_shows_overrides_and_flags_missing_secrets(browser_client, repo, set_secret):
    set_secret("GLOBAL_TOKEN", "global-value-xyz")
    set_secret("REPO_TOKEN", "repo-value-xyz", repo)
    MCPServer.objects.create(name="GitHub Tools", command="npx", env={"T": "{{GLOBAL_TOKEN}}"})
    MCPServer.objects.create(name="GitHub Tools", repo=repo, command="docker", env={"T": "{{REPO_TOKEN}}"})
    MCPServer.objects.create(name="Search", command="s", args=["{{SEARCH_KEY}}", "{{GLOBAL_TOKEN}}"])
    MCPServer.objects.create(name="Off", command="o", enabled=False)
    page = browser_client.get(f"/settings/mcp/repos/{repo.pk}/")
    fragment = browser_client.get(f"/settings/mcp/repos/{repo.pk}/", HTTP_HX_REQUEST="true")
    html = page.content.decode()
    assert "<html" in html and "<html" not in fragment.content.decode()
    assert 'class="effective-config"' in fragment.content.decode()
    assert "overrides global" in html
    assert 'data-status="overridden" data-server="GitHub Tools"' in html
    assert 'data-status="disabled" data-server="Off"' in html
    assert "Missing secrets: <code>SEARCH_KEY</code>" in html
    assert '<code>REPO_TOKEN</code> <span class="tag">repository</span>' in html
    assert '<code>GLOBAL_TOKEN</code> <span class="tag">global</span>' in html
    assert "2 servers apply" in html
    assert "value-xyz" not in html


def test_effective_configuration_for_unknown_repository_is_404(browser_client, db):
    assert browser_client.get("/settings/mcp/repos/999/").status_code == 404


def test_admin_lists_servers_without_an_add_button(browser_client, db):
    MCPServer.objects.create(name="GitHub Tools", command="npx")
    resp = browser_client.get("/admin/mcp/mcpserver/")
    assert resp.status_code == 200 and "GitHub Tools" in resp.content.decode()
    assert browser_client.get("/admin/mcp/mcpserver/add/").status_code == 403
