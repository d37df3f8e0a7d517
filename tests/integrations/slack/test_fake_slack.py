"""The fake answers the way Slack's incoming webhooks do, so the other tests mean something."""

import json

import urllib3

from tests.fakes.slack import FakeSlack


def _post(url, body, content_type="application/json"):
    http = urllib3.PoolManager()
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    resp = http.request("POST", url, body=body, headers={"Content-Type": content_type}, retries=False)
    return resp.status, resp.data.decode(), resp.headers


def test_accepts_text_and_records_it():
    with FakeSlack() as slack:
        url = slack.webhook_url()
        assert _post(url, {"text": "hello"})[:2] == (200, "ok")
        assert slack.messages(url) == [{"text": "hello"}]


def test_payload_shape_is_checked_like_slack():
    with FakeSlack() as slack:
        url = slack.webhook_url()
        assert _post(url, b"{not json")[:2] == (400, "invalid_payload")
        assert _post(url, {"username": "x"})[:2] == (400, "no_text")
        assert _post(url, {"text": "x", "blocks": "nope"})[:2] == (400, "invalid_blocks_format")
        too_long = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}
        assert _post(url, {"text": "x", "blocks": [too_long]})[:2] == (400, "invalid_blocks")
        big_header = {"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}
        assert _post(url, {"blocks": [big_header]})[:2] == (400, "invalid_blocks")
        many = [{"type": "divider"}] * 51
        assert _post(url, {"text": "x", "blocks": many})[:2] == (400, "invalid_blocks")
        eleven_fields = {"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}
        assert _post(url, {"text": "x", "blocks": [eleven_fields]})[:2] == (400, "invalid_blocks")
        assert slack.messages(url) == []


def test_documented_errors_and_rate_limits():
    with FakeSlack() as slack:
        url = slack.webhook_url()
        assert _post(slack.base_url + "/services/T1/B1/unknown", {"text": "x"})[:2] == (404, "no_service")
        slack.queue(url, "rate_limited", retry_after=3)
        status, text, headers = _post(url, {"text": "x"})
        assert (status, headers["Retry-After"]) == (429, "3")
        assert _post(url, {"text": "x"})[:2] == (200, "ok")
        slack.set_hook(url, "invalid_token")
        assert _post(url, {"text": "x"})[:2] == (403, "invalid_token")
        slack.set_hook(url, "channel_not_found")
        assert _post(url, {"text": "x"})[:2] == (404, "channel_not_found")
        slack.set_hook(url, "channel_is_archived")
        assert _post(url, {"text": "x"})[:2] == (410, "channel_is_archived")
        assert len(slack.posts(url)) == 5
        assert len(slack.messages(url)) == 1
