"""The fake GitHub itself behaves like GitHub where tests depend on it (shapes, Link, ETags, limits)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import urllib3

from tests.fakes.github import DEFAULT_TOKEN, FakeGitHub

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "github"
AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}", "Accept": "application/vnd.github+json"}


def _get(fake: FakeGitHub, path: str, headers: dict | None = None):
    return urllib3.request("GET", fake.url + path, headers={**AUTH, **(headers or {})}, retries=False)


def _fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


def test_issue_objects_have_the_documented_shape():
    with FakeGitHub() as fake:
        fake.add_issue("octocat/Hello-World", "Found a bug", labels=["bug"], assignee="octocat")
        fake.add_issue("octocat/Hello-World", "Fix the bug", pull_request=True)
        fake.add_comment("octocat/Hello-World", 1, "Me too")
        issues = _get(fake, "/repos/octocat/Hello-World/issues").json()
        single = _get(fake, "/repos/octocat/Hello-World/issues/1").json()
        comments = _get(fake, "/repos/octocat/Hello-World/issues/1/comments").json()

    documented_issue, documented_pr = _fixture("issues_list.json")
    by_number = {i["number"]: i for i in issues}
    assert set(by_number[1]) == set(documented_issue)
    assert set(by_number[2]) == set(documented_pr)
    assert set(by_number[2]["pull_request"]) == set(documented_pr["pull_request"])
    assert set(single) == set(_fixture("issue.json"))
    assert set(single["user"]) == set(documented_issue["user"])
    assert set(single["labels"][0]) == set(documented_issue["labels"][0])
    assert set(comments[0]) == set(_fixture("issue_comments.json")[0])


def test_link_header_has_next_last_first_and_prev():
    with FakeGitHub() as fake:
        for i in range(5):
            fake.add_issue("acme/webapp", f"Issue {i}")
        first = _get(fake, "/repos/acme/webapp/issues?per_page=2")
        middle = _get(fake, "/repos/acme/webapp/issues?per_page=2&page=2")
        last = _get(fake, "/repos/acme/webapp/issues?per_page=2&page=3")

    assert 'rel="next"' in first.headers["Link"] and 'rel="last"' in first.headers["Link"]
    assert "page=3" in first.headers["Link"] and 'rel="prev"' not in first.headers["Link"]
    assert all(f'rel="{rel}"' in middle.headers["Link"] for rel in ("next", "last", "first", "prev"))
    assert 'rel="next"' not in last.headers["Link"] and len(last.json()) == 1


def test_if_none_match_gets_a_304_that_uses_no_rate_limit():
    with FakeGitHub(rate_limit=10) as fake:
        fake.add_issue("acme/webapp", "Fix login")
        first = _get(fake, "/repos/acme/webapp/issues")
        second = _get(fake, "/repos/acme/webapp/issues", {"If-None-Match": first.headers["ETag"]})

    assert first.status == 200 and second.status == 304 and second.data == b""
    assert first.headers["x-ratelimit-remaining"] == "9"
    assert second.headers["x-ratelimit-remaining"] == "9"
    assert second.headers["x-ratelimit-limit"] == "10"


def test_unknown_token_is_401_bad_credentials():
    with FakeGitHub() as fake:
        fake.add_repo("acme/webapp")
        resp = urllib3.request("GET", fake.url + "/repos/acme/webapp/issues", headers={"Authorization": "Bearer nope"})

    assert resp.status == 401 and resp.json()["message"] == "Bad credentials"


def test_faults_latency_and_the_request_log():
    with FakeGitHub(latency=0.05) as fake:
        fake.add_repo("acme/webapp")
        fake.fail(500, path="/issues", times=1)
        fake.secondary_rate_limit(retry_after=7)
        started = time.monotonic()
        statuses = [_get(fake, "/repos/acme/webapp/issues") for _ in range(3)]
        elapsed = time.monotonic() - started

    assert [r.status for r in statuses] == [500, 429, 200]
    assert statuses[1].headers["Retry-After"] == "7"
    assert elapsed >= 0.15
    assert [r.status for r in fake.requests] == [500, 429, 200]
    assert fake.requests[0].headers["authorization"] == f"Bearer {DEFAULT_TOKEN}"


def test_label_assignee_and_state_filters_follow_github():
    with FakeGitHub() as fake:
        fake.add_issue("acme/webapp", "both", labels=["bug", "ui"], assignee="alice")
        fake.add_issue("acme/webapp", "bug only", labels=["bug"])
        fake.add_issue("acme/webapp", "closed", labels=["bug"], state="closed")

        def titles(query):
            return sorted(i["title"] for i in _get(fake, "/repos/acme/webapp/issues?" + query).json())

        assert titles("labels=bug,ui") == ["both"]  # all of the labels, as GitHub does
        assert titles("labels=bug") == ["both", "bug only"]
        assert titles("assignee=none") == ["bug only"]
        assert titles("assignee=*") == ["both"]
        assert titles("state=all&labels=bug") == ["both", "bug only", "closed"]
        assert _get(fake, "/repos/acme/webapp/issues?state=bogus").status == 422
