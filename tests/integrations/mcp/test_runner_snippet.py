"""The README's agent-runner commands, run as written against a live server in a real git checkout."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from django.conf import settings

from integrations.mcp.models import MCPServer
from optio import lifecycle, secrets
from optio.models import ApiToken, Repo, Secret


def _snippet() -> str:
    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    section = readme.split("## MCP servers", 1)[1].split("### How an agent runner uses it", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)


def _checkout(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def _run(checkout: Path, url: str, token: str, task_id) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPTIO_URL": url, "OPTIO_TOKEN": token, "TASK_ID": str(task_id), "NO_PROXY": "*"}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _snippet()],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_readme_runner_commands_write_an_excluded_mcp_json(live_server, transactional_db, admin_user, tmp_path):
    repo = Repo.objects.create(url="https://github.com/acme/webapp")
    secrets.set_secret("GITHUB_TOKEN", "ghp_from_the_store")
    MCPServer.objects.create(
        name="GitHub Tools",
        command="npx",
        args=["-y", "@modelcontextprotocol/server-github"],
        env={"GITHUB_TOKEN": "{{GITHUB_TOKEN}}"},
    )
    task = lifecycle.create_task(repo, "Add email validation", "Do it")
    _, token = ApiToken.objects.issue(admin_user, name="runner")

    checkout = _checkout(tmp_path, "ok")
    for _ in range(2):  # running it again neither fails nor duplicates the exclude line
        result = _run(checkout, live_server.url, token, task.pk)
        assert result.returncode == 0, result.stderr
    written = json.loads((checkout / ".mcp.json").read_text())
    assert written["mcpServers"]["GitHub Tools"]["env"] == {"GITHUB_TOKEN": "ghp_from_the_store"}
    assert (checkout / ".git/info/exclude").read_text().count("/.mcp.json") == 1
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=checkout,
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert ".mcp.json" not in status

    Secret.objects.all().delete()
    refused = _checkout(tmp_path, "refused")
    result = _run(refused, live_server.url, token, task.pk)
    assert result.returncode == 1
    assert "GITHUB_TOKEN (used by GitHub Tools)" in result.stderr
    assert not (refused / ".mcp.json").exists()
