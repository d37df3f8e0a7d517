"""Repository URLs: one canonical spelling, applied when saving and when looking up."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from optio.models import Repo
from optio.repo_urls import InvalidRepoUrl, normalize_repo_url

CANONICAL = "https://github.com/acme/webapp"

SPELLINGS = [
    "https://github.com/acme/webapp",
    "http://github.com/acme/webapp",  # http becomes https
    "https://github.com/acme/webapp.git",
    "https://github.com/acme/webapp/",
    "https://github.com/acme/webapp.git/",
    "https://github.com/Acme/WebApp",
    "HTTPS://GitHub.COM/ACME/WEBAPP",
    "  https://github.com/acme/webapp  ",
    "github.com/acme/webapp",
    "git@github.com:acme/webapp.git",
    "git@github.com:Acme/WebApp",
    "ssh://git@github.com/acme/webapp.git",
    "ssh://git@github.com:22/acme/webapp.git",  # an ssh port is not part of the web address
    "git+ssh://git@github.com/acme/webapp",
    "git://github.com/acme/webapp.git",
    "https://x-access-token:ghs_secret@github.com/acme/webapp.git",  # credentials are dropped
    "https://github.com:443/acme/webapp",
    "https://github.com/acme/webapp?tab=readme#top",
]


@pytest.mark.parametrize("raw", SPELLINGS)
def test_spellings_of_one_repository_normalise_to_one_url(raw):
    assert normalize_repo_url(raw) == CANONICAL


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://github.example.com/Platform/API.git", "https://github.example.com/platform/api"),
        ("git@ghe.corp.internal:Team/Service.git", "https://ghe.corp.internal/team/service"),
        ("ssh://git@ghe.corp.internal:7999/team/service.git", "https://ghe.corp.internal/team/service"),
        ("http://ghe.corp.internal:8443/team/service/", "https://ghe.corp.internal:8443/team/service"),
        ("https://GHE.Corp.Internal:8443/Team/Service", "https://ghe.corp.internal:8443/team/service"),
        ("https://github.com/my_org/my.repo-name", "https://github.com/my_org/my.repo-name"),
    ],
)
def test_github_enterprise_hosts_keep_their_host_and_web_port(raw, expected):
    assert normalize_repo_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        None,
        42,
        "https://github.com/acme",
        "https://github.com/acme/webapp/tree/main",
        "https://github.com/",
        "ftp://github.com/acme/webapp",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "https:///acme/webapp",
        "https://github.com/ac me/webapp",
        "https://github.com/acme/web%20app",
        "https://github.com/../webapp",
        "https://github.com/acme/..",
        "https://github.com/acme/.git",
        "https://github.com:notaport/acme/webapp",
        "https://[::1/acme/webapp",
        "https://git_hub.com/acme/webapp",
        "https://-github.com/acme/webapp",
        "git@github.com:acme",
        "not a url",
    ],
)
def test_invalid_inputs_raise_a_clear_error(raw):
    with pytest.raises(InvalidRepoUrl) as info:
        normalize_repo_url(raw)
    assert "https://" in str(info.value)  # the message shows the expected form


def test_url_is_normalised_on_save(db):
    repo = Repo.objects.create(url="git@github.com:Acme/WebApp.git")
    assert repo.url == CANONICAL
    assert Repo.objects.values_list("url", flat=True).get() == CANONICAL
    assert (repo.host, repo.owner, repo.name, repo.full_name) == ("github.com", "acme", "webapp", "acme/webapp")


def test_saving_an_invalid_url_is_refused(db):
    with pytest.raises(InvalidRepoUrl):
        Repo.objects.create(url="https://github.com/only-owner")
    assert not Repo.objects.exists()


@pytest.mark.parametrize("raw", SPELLINGS)
def test_lookup_normalises_too(repo, raw):
    assert Repo.objects.get_by_url(raw) == repo
    assert list(Repo.objects.filter_url(raw)) == [repo]


def test_lookup_of_an_invalid_url_raises_instead_of_matching_nothing(repo):
    with pytest.raises(InvalidRepoUrl):
        Repo.objects.get_by_url("https://github.com/acme")


def test_connecting_another_spelling_of_a_connected_repository_is_a_409(api, repo):
    resp = api.post("/api/repos", {"repoUrl": "git@github.com:ACME/webapp.git"})
    assert resp.status_code == 409
    assert resp.json()["error"] == f"{CANONICAL} is already connected."
    assert Repo.objects.count() == 1


def test_api_answers_an_invalid_repo_url_with_a_400_naming_the_field(api, db):
    resp = api.post("/api/repos", {"repoUrl": "https://github.com/acme"})
    assert resp.status_code == 400
    body = resp.json()
    assert "repoUrl" in body["details"]
    assert body["error"].startswith("Invalid input. repoUrl:")


def test_task_filters_and_creation_accept_any_spelling(api, repo):
    created = api.post("/api/tasks", {"title": "t", "prompt": "p", "repoUrl": "HTTP://github.com/Acme/WebApp/"})
    assert created.status_code == 201, created.content
    listed = api.get("/api/tasks?" + urlencode({"repo": "git@github.com:acme/webapp.git"}))
    assert [t["id"] for t in listed.json()["results"]] == [created.json()["id"]]


def test_admin_form_normalises_and_rejects(client, admin_user, repo):
    client.force_login(admin_user)
    dup = client.post(
        "/admin/optio/repo/add/",
        {"url": "git@github.com:acme/webapp.git", "default_branch": "main", "slack_notify_on": '["completed"]'},
    )
    assert dup.status_code == 200
    assert "already exists" in dup.content.decode()
    bad = client.post(
        "/admin/optio/repo/add/", {"url": "nope", "default_branch": "main", "slack_notify_on": '["completed"]'}
    )
    assert bad.status_code == 200
    assert "not a repository URL" in bad.content.decode()
    good = client.post(
        "/admin/optio/repo/add/",
        {"url": "git@github.com:acme/other.git", "default_branch": "main", "slack_notify_on": '["completed"]'},
    )
    assert good.status_code == 302, good.context["adminform"].form.errors
    assert Repo.objects.filter(url="https://github.com/acme/other").exists()
