"""The webhook URL (its path is the credential) never appears in a response or a log line."""

from __future__ import annotations

import logging

import pytest

from integrations.slack.models import SlackNotification
from tests.integrations.slack.conftest import drive, running_task


def secret_parts(url: str) -> list[str]:
    """The URL and its token: neither may show up anywhere."""
    return [url, url.split("/services/", 1)[1], url.rsplit("/", 1)[1]]


def assert_absent(url: str, text: str) -> None:
    for part in secret_parts(url):
        assert part not in text, f"the webhook URL leaked: {text[:300]}"


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)  # urllib3 logs request lines at DEBUG
    return caplog


def test_url_never_in_api_responses(api, repo, slack, hook_url):
    responses = [
        api.patch(f"/api/repos/{repo.pk}", {"slackEnabled": True, "slackWebhookUrl": hook_url}),
        api.get(f"/api/repos/{repo.pk}"),
        api.get("/api/repos"),
        api.post("/api/slack/test", {"webhookUrl": hook_url}),
        api.post("/api/slack/test", {"repoId": repo.pk}),
    ]
    slack.set_hook(hook_url, "invalid_token")
    responses.append(api.post("/api/slack/test", {"webhookUrl": hook_url}))
    responses.append(api.post("/api/slack/test", {"repoId": repo.pk}))
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 502, 502]
    for resp in responses:
        assert_absent(hook_url, resp.content.decode())


@pytest.mark.parametrize(
    "bad",
    [
        "https://hooks.example.com:99999/services/T0SECRET/B0SECRET/tok3nSECRETvalue",
        "https:///services/T0SECRET/B0SECRET/tok3nSECRETvalue",
        "https://user:pw@hooks.example.com/services/T0SECRET/B0SECRET/tok3nSECRETvalue",
        "https://no-such-host.invalid/services/T0SECRET/B0SECRET/tok3nSECRETvalue",
    ],
)
def test_url_never_in_validation_errors(api, repo, logs, bad):
    for resp in (
        api.patch(f"/api/repos/{repo.pk}", {"slackWebhookUrl": bad}),
        api.post("/api/slack/test", {"webhookUrl": bad}),
    ):
        assert resp.status_code == 400, resp.content
        assert "tok3nSECRETvalue" not in resp.content.decode()
        assert "B0SECRET" not in resp.content.decode()
    assert "tok3nSECRETvalue" not in logs.text


def test_url_never_in_log_lines(committed, api, slack, hook_url, slack_repo, logs):
    slack.queue(hook_url, "rate_limited", retry_after=1)
    committed(drive, committed(running_task, slack_repo), "completed")  # retried, then sent
    slack.set_hook(hook_url, "invalid_token")
    committed(drive, committed(running_task, slack_repo, title="Second"), "failed", error="boom")
    api.post("/api/slack/test", {"webhookUrl": hook_url})
    api.post("/api/slack/test", {"repoId": slack_repo.pk})

    assert list(SlackNotification.objects.order_by("pk").values_list("status", flat=True)) == ["sent", "failed"]
    assert any("urllib3" in r.name for r in logs.records)  # the request lines were logged, masked
    for record in logs.records:
        assert_absent(hook_url, record.getMessage())
    assert_absent(hook_url, logs.text)


def test_url_never_in_notification_records(committed, slack, hook_url, slack_repo):
    slack.set_hook(hook_url, "channel_not_found")
    committed(drive, committed(running_task, slack_repo), "failed")
    notification = SlackNotification.objects.get()
    slack_repo.refresh_from_db()
    for text in (notification.last_error, slack_repo.slack_last_error):
        assert text
        assert_absent(hook_url, text)
