"""The Linear client against the fake Linear: authentication, errors, pagination."""

from __future__ import annotations

import socket

import pytest

from integrations.linear import client
from tests.fakes.linear import seed

API_KEY = "lin_api_test_key"
OPEN = {"state": {"type": {"nin": ["completed", "canceled"]}}}


def test_the_api_key_is_sent_as_it_is_without_bearer(linear):
    team = linear.add_team("ENG")
    linear.add_issue(team, "Add email validation")
    page = client.list_issues(API_KEY, filter=OPEN)
    assert [i["title"] for i in page.issues] == ["Add email validation"]
    assert linear.requests[-1].headers["authorization"] == API_KEY
    assert linear.requests[-1].headers["content-type"] == "application/json"


def test_a_rejected_key_is_an_authentication_error_that_says_what_to_do(linear):
    with pytest.raises(client.LinearAuthError) as caught:
        client.list_issues("lin_api_wrong", filter=OPEN)
    message = str(caught.value)
    assert caught.value.kind == "bad_credentials"
    assert "Linear rejected the API key" in message
    assert "Personal API keys" in message
    assert "lin_api_wrong" not in message


def test_a_personal_key_sent_as_bearer_is_rejected_by_linear(linear):
    # Documents why the client never prefixes the key: Linear answers it with an auth error.
    with pytest.raises(client.LinearAuthError):
        client.execute(f"Bearer {API_KEY}", client.VIEWER_QUERY)


def test_rate_limit_is_its_own_error_with_the_reset_time(linear):
    linear.fail(kind="ratelimited")
    with pytest.raises(client.LinearRateLimited) as caught:
        client.list_issues(API_KEY, filter=OPEN)
    assert caught.value.status == 400  # Linear answers a rate limit with HTTP 400, not 429
    assert caught.value.reset_at is not None
    assert "rate limit" in str(caught.value)


def test_a_server_error_is_unavailable(linear):
    linear.fail(502)
    with pytest.raises(client.LinearUnavailable) as caught:
        client.viewer(API_KEY)
    assert caught.value.kind == "unavailable"


def test_a_query_linear_refuses_is_a_query_error_with_linears_message(linear):
    with pytest.raises(client.LinearQueryError) as caught:
        client.execute(API_KEY, "query { issues { nodes { colour } } }")
    assert "colour" in str(caught.value)


def test_pages_are_walked_with_cursors_each_issue_once(linear):
    team = linear.add_team("ENG")
    seed(linear, team, 120)
    seen, after, pages = [], None, 0
    while True:
        page = client.list_issues(API_KEY, filter=OPEN, after=after)
        pages += 1
        seen += [i["identifier"] for i in page.issues]
        if not page.has_next_page:
            break
        after = page.end_cursor
    assert pages == 3
    assert len(seen) == len(set(seen)) == 120


def test_an_unreachable_linear_is_unavailable(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.LINEAR_API_URL = f"http://127.0.0.1:{port}/graphql"  # nothing listens there any more
    with pytest.raises(client.LinearUnavailable) as caught:
        client.viewer(API_KEY)
    assert "could not be reached" in str(caught.value)
