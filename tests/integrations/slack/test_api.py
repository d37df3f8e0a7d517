"""Slack fields of PATCH /api/repos/<id> and POST /api/slack/test."""

from __future__ import annotations

import pytest

from optio import crypto
from optio.models import Repo


def test_repo_exposes_slack_fields_with_defaults(api, repo):
    body = api.get(f"/api/repos/{repo.pk}").json()
    assert body["slackEnabled"] is False
    assert body["slackWebhookUrl"] is None
    assert body["slackNotifyOn"] == ["completed", "failed", "needs_attention", "pr_opened"]
    assert body["slackLastError"] == "" and body["slackLastErrorAt"] is None


def test_patch_stores_the_url_encrypted_and_shows_it_masked(api, repo, slack, hook_url):
    resp = api.patch(f"/api/repos/{repo.pk}", {"slackEnabled": True, "slackWebhookUrl": hook_url})
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["slackEnabled"] is True
    token = hook_url.rsplit("/", 1)[1]
    assert body["slackWebhookUrl"].startswith(slack.base_url + "/services/T")
    assert body["slackWebhookUrl"].endswith("…/…") and len(body["slackWebhookUrl"]) < len(slack.base_url) + 20
    assert token not in resp.content.decode()
    repo.refresh_from_db()
    assert hook_url not in repo.slack_webhook_url_encrypted  # encrypted at rest
    assert crypto.decrypt(repo.slack_webhook_url_encrypted) == hook_url


def test_masking_of_a_real_looking_slack_url(api, repo, settings, monkeypatch):
    from optio.api.serializers import mask_url

    url = "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx"
    assert mask_url(url) == "https://hooks.slack.com/services/T0…/…"


def test_notify_on_is_a_validated_subset(api, repo):
    resp = api.patch(f"/api/repos/{repo.pk}", {"slackNotifyOn": ["failed", "completed", "failed"]})
    assert resp.status_code == 200
    assert resp.json()["slackNotifyOn"] == ["completed", "failed"]
    resp = api.patch(f"/api/repos/{repo.pk}", {"slackNotifyOn": ["failed", "task.created"]})
    assert resp.status_code == 400
    body = resp.json()
    assert '"task.created" is not a Slack notification event' in body["error"]
    assert "slackNotifyOn" in body["details"]
    assert api.patch(f"/api/repos/{repo.pk}", {"slackNotifyOn": "failed"}).status_code == 400
    assert api.patch(f"/api/repos/{repo.pk}", {"slackNotifyOn": []}).json()["slackNotifyOn"] == []


def test_enabling_slack_needs_a_url(api, repo):
    resp = api.patch(f"/api/repos/{repo.pk}", {"slackEnabled": True})
    assert resp.status_code == 400
    assert "slackWebhookUrl" in resp.json()["error"]


def test_last_error_is_read_only_and_cleared_by_a_new_url(api, repo, hook_url):
    Repo.objects.filter(pk=repo.pk).update(slack_last_error="old problem")
    resp = api.patch(f"/api/repos/{repo.pk}", {"slackLastError": ""})
    assert resp.json()["slackLastError"] == "old problem"
    resp = api.patch(f"/api/repos/{repo.pk}", {"slackWebhookUrl": hook_url})
    assert resp.json()["slackLastError"] == ""


def test_empty_url_removes_it_and_disabling_keeps_it(api, repo, hook_url):
    api.patch(f"/api/repos/{repo.pk}", {"slackEnabled": True, "slackWebhookUrl": hook_url})
    assert api.patch(f"/api/repos/{repo.pk}", {"slackEnabled": False}).json()["slackWebhookUrl"]
    assert api.patch(f"/api/repos/{repo.pk}", {"slackWebhookUrl": ""}).json()["slackWebhookUrl"] is None
    assert Repo.objects.get().slack_webhook_url_encrypted == ""


@pytest.mark.parametrize(
    "url,words",
    [
        ("ftp://hooks.example.com/services/T/B/x", "must start with https://"),
        ("hooks.slack.com/services/T/B/x", "must start with https://"),
        ("javascript:alert(1)", "must start with https://"),
        ("http://127.0.0.1:9/services/T/B/x", "loopback"),
        ("http://10.1.2.3/services/T/B/x", "private network"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::ffff:127.0.0.1]/services/T/B/x", "loopback"),
    ],
)
def test_url_validation_on_patch_and_test_endpoint(api, repo, settings, url, words):
    settings.OPTIO_ALLOW_PRIVATE_URLS = False
    resp = api.patch(f"/api/repos/{repo.pk}", {"slackWebhookUrl": url})
    assert resp.status_code == 400 and words in resp.json()["error"], resp.content
    resp = api.post("/api/slack/test", {"webhookUrl": url})
    assert resp.status_code == 400
    body = resp.json()
    assert body["ok"] is False and (words in body["error"] or "Only http:// and https://" in body["error"])


def test_private_addresses_are_allowed_when_configured(api, repo, slack, hook_url, settings):
    settings.OPTIO_ALLOW_PRIVATE_URLS = True
    assert api.patch(f"/api/repos/{repo.pk}", {"slackWebhookUrl": hook_url}).status_code == 200
    assert api.post("/api/slack/test", {"webhookUrl": hook_url}).json() == {"ok": True}


def test_test_endpoint_sends_a_sample_message(api, slack, hook_url):
    resp = api.post("/api/slack/test", {"webhookUrl": hook_url})
    assert resp.status_code == 200 and resp.json() == {"ok": True}
    [message] = slack.messages(hook_url)
    assert "test message from Optio" in message["text"] + message["blocks"][0]["text"]["text"]


@pytest.mark.parametrize(
    "error,status,words",
    [
        ("invalid_token", 403, "token is invalid (invalid_token)"),
        ("no_service", 404, "does not know this webhook (no_service)"),
        ("channel_not_found", 404, "channel no longer exists (channel_not_found)"),
        ("channel_is_archived", 410, "channel is archived"),
        ("action_prohibited", 403, "do not allow this webhook"),
    ],
)
def test_test_endpoint_reports_slacks_error_in_words(api, slack, hook_url, error, status, words):
    slack.set_hook(hook_url, error)
    resp = api.post("/api/slack/test", {"webhookUrl": hook_url})
    assert resp.status_code == 502
    body = resp.json()
    assert body["ok"] is False and words in body["error"]
    assert body["details"] == {"slackError": error, "status": status}


def test_test_endpoint_reports_an_unknown_hook(api, slack):
    resp = api.post("/api/slack/test", {"webhookUrl": slack.base_url + "/services/T1/B1/gone"})
    assert resp.status_code == 502 and "no_service" in resp.json()["error"]


def test_test_endpoint_uses_the_stored_url_and_clears_its_error(api, slack, hook_url, slack_repo):
    Repo.objects.filter(pk=slack_repo.pk).update(
        slack_last_error="Slack said no", slack_last_error_at="2025-01-01T00:00Z"
    )
    resp = api.post("/api/slack/test", {"repoId": slack_repo.pk})
    assert resp.json() == {"ok": True}
    [message] = slack.messages(hook_url)
    assert "acme/webapp" in message["text"]
    assert Repo.objects.get().slack_last_error == ""


def test_test_endpoint_bad_requests(api, repo):
    resp = api.post("/api/slack/test", {})
    assert resp.status_code == 400 and "webhookUrl" in resp.json()["error"]
    resp = api.post("/api/slack/test", {"repoId": repo.pk})
    assert resp.status_code == 400 and "has no Slack webhook URL" in resp.json()["error"]
    resp = api.post("/api/slack/test", {"repoId": 99999})
    assert resp.status_code == 400 and "No connected repository" in resp.json()["error"]
    resp = api.post("/api/slack/test", {"repoId": "x"})
    assert resp.status_code == 400 and resp.json()["ok"] is False
    resp = api.client.post("/api/slack/test", data="{", content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {api.token}")  # fmt: skip
    assert resp.status_code == 400


def test_test_endpoint_needs_a_token(client, db):
    resp = client.post("/api/slack/test", {"webhookUrl": "https://hooks.slack.com/services/T/B/x"},
                       content_type="application/json")  # fmt: skip
    assert resp.status_code == 401
