"""The rules in integrations/prwatch/status.py that need no server: PR URLs, summaries, precedence."""

from __future__ import annotations

import pytest

from integrations.prwatch.status import decide, own_pull, parse_pull_url, summarise, summarise_checks

WEBAPP = "https://github.com/acme/webapp"


@pytest.mark.parametrize(
    "url, number",
    [
        ("https://github.com/acme/webapp/pull/42", 42),
        ("https://github.com/Acme/WebApp/pull/42/files", 42),
        ("https://github.com/acme/webapp/pull/42/", 42),
        ("http://github.com/acme/webapp/pulls/7", 7),
    ],
)
def test_pr_urls_of_the_tasks_own_repository(url, number):
    assert own_pull(url, WEBAPP).number == number


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/evil/webapp/pull/42",  # another repository
        "https://github.example.com/acme/webapp/pull/42",  # another host
        "https://github.com/acme/webapp/issues/42",  # not a PR
        "https://github.com/acme/webapp/pull/abc",
        "not a url",
        "",
    ],
)
def test_anything_else_is_not_ours(url):
    assert own_pull(url, WEBAPP) is None


def test_an_enterprise_pr_matches_its_enterprise_repository():
    ref = parse_pull_url("https://ghe.example.com/Team/App/pull/3")
    assert (ref.repo_url, ref.number) == ("https://ghe.example.com/team/app", 3)


def test_a_stale_or_unknown_conclusion_is_not_passing():
    runs = [
        {"name": "a", "status": "completed", "conclusion": "stale"},
        {"name": "b", "status": "completed", "conclusion": "skipped"},
    ]
    assert summarise_checks(runs, {}) == {"state": "pending", "total": 2, "failing": [], "pending": ["a"],
                                          "passing": ["b"]}  # fmt: skip


def test_no_checks_at_all_count_as_passing():
    assert summarise_checks([], {"state": "pending", "statuses": [], "total_count": 0})["state"] == "none"


def _status(**pull):
    base = {"number": 1, "state": "open", "merged": False, "head": {"sha": "abc1234"}, "html_url": "u"}
    failing = [{"name": "test", "status": "completed", "conclusion": "failure"}]
    changes = [
        {"id": 1, "user": {"login": "alice"}, "state": "CHANGES_REQUESTED", "submitted_at": "2025-01-01T00:00:00Z"}
    ]
    return summarise(dict(base, **pull), failing, {}, changes, observed_at="2025-01-01T00:00:00Z")


def test_merged_beats_closed_beats_failing_ci_beats_a_change_request():
    assert _status(merged=True, state="closed")["verdict"] == "merged"
    assert _status(state="closed")["verdict"] == "closed"
    assert _status()["verdict"] == "ci_failed"


def test_a_merged_pr_completes_from_needs_attention_too():
    decision = decide(_status(merged=True, state="closed"), "needs_attention", "ci_failed")
    assert (decision.to, decision.changes) == ("completed", {"error": ""})
