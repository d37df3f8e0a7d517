"""The Slack section of /settings/repos/<id>/: save, masked URL, last error, "Send test"."""

from __future__ import annotations

import pytest

from optio import crypto
from optio.models import Repo


@pytest.fixture
def browser_client(client, admin_user):
    client.force_login(admin_user)
    return client


def page(client, repo) -> str:
    return client.get(f"/settings/repos/{repo.pk}/").content.decode()


def test_save_slack_settings_and_see_only_a_masked_url(browser_client, repo, slack, hook_url):
    resp = browser_client.post(
        f"/settings/repos/{repo.pk}/",
        {"section": "slack", "slack_enabled": "on", "slack_webhook_url": hook_url,
         "slack_notify_on": ["failed", "needs_attention"]},
    )  # fmt: skip
    assert resp.status_code == 302
    repo.refresh_from_db()
    assert repo.slack_enabled and repo.slack_notify_on == ["failed", "needs_attention"]
    assert crypto.decrypt(repo.slack_webhook_url_encrypted) == hook_url
    html = page(browser_client, repo)
    assert "Slack settings saved." in html
    assert hook_url.split("/services/")[1] not in html
    assert hook_url.rsplit("/", 1)[1] not in html
    assert slack.base_url + "/services/T" in html  # the masked form


def test_blank_url_keeps_the_saved_one_and_remove_clears_it(browser_client, slack_repo, hook_url):
    browser_client.post(f"/settings/repos/{slack_repo.pk}/", {"section": "slack", "slack_enabled": "on"})
    slack_repo.refresh_from_db()
    assert crypto.decrypt(slack_repo.slack_webhook_url_encrypted) == hook_url
    browser_client.post(f"/settings/repos/{slack_repo.pk}/", {"section": "slack", "slack_remove_url": "on"})
    slack_repo.refresh_from_db()
    assert slack_repo.slack_webhook_url_encrypted == "" and not slack_repo.slack_enabled


def test_invalid_url_is_shown_without_saving(browser_client, repo, settings):
    settings.OPTIO_ALLOW_PRIVATE_URLS = False
    resp = browser_client.post(
        f"/settings/repos/{repo.pk}/",
        {"section": "slack", "slack_enabled": "on", "slack_webhook_url": "http://10.0.0.8/services/T1/B1/secretpart"},
    )
    assert resp.status_code == 400
    html = resp.content.decode()
    assert "private network address" in html and "secretpart" not in html
    assert Repo.objects.get().slack_enabled is False


def test_enabling_without_url_is_explained(browser_client, repo):
    resp = browser_client.post(f"/settings/repos/{repo.pk}/", {"section": "slack", "slack_enabled": "on"})
    assert resp.status_code == 400 and "to enable Slack notifications" in resp.content.decode()


def test_last_error_is_shown(browser_client, slack_repo):
    Repo.objects.filter(pk=slack_repo.pk).update(
        slack_last_error="Slack says the webhook's token is invalid (invalid_token).",
        slack_last_error_at="2025-01-15T10:30:00Z",
    )
    html = page(browser_client, slack_repo)
    assert "Last Slack error" in html and "invalid_token" in html and "2025-01-15 10:30:00" in html


def test_send_test_with_htmx_answers_inline(browser_client, slack_repo, slack, hook_url):
    url = f"/settings/repos/{slack_repo.pk}/slack/test/"
    resp = browser_client.post(url, {"slack_webhook_url": ""}, HTTP_HX_REQUEST="true")
    assert resp.status_code == 200
    assert 'id="slack-test-result"' in resp.content.decode() and "Sent." in resp.content.decode()
    assert len(slack.messages(hook_url)) == 1
    slack.set_hook(hook_url, "invalid_token")
    resp = browser_client.post(url, {}, HTTP_HX_REQUEST="true")
    assert "invalid_token" in resp.content.decode() and 'class="inline-result error"' in resp.content.decode()


def test_send_test_a_pasted_url_before_saving(browser_client, repo, slack):
    other = slack.webhook_url()
    resp = browser_client.post(
        f"/settings/repos/{repo.pk}/slack/test/", {"slack_webhook_url": other}, HTTP_HX_REQUEST="true"
    )
    assert "Sent." in resp.content.decode()
    assert len(slack.messages(other)) == 1


def test_send_test_without_javascript_redirects_with_the_result(browser_client, slack_repo, slack, hook_url):
    slack.set_hook(hook_url, "channel_not_found")
    resp = browser_client.post(f"/settings/repos/{slack_repo.pk}/slack/test/", {}, follow=True)
    assert resp.redirect_chain[-1][0] == f"/settings/repos/{slack_repo.pk}/"
    assert "Slack test:" in resp.content.decode() and "channel_not_found" in resp.content.decode()


def test_send_test_needs_a_login(client, slack_repo):
    assert client.post(f"/settings/repos/{slack_repo.pk}/slack/test/").status_code == 302
