"""POST /hooks/github: signature first, a ledger of deliveries, and work that runs at once."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from integrations.prwatch.models import InboundDelivery
from optio import secrets
from optio.models import Event, Repo, Task
from tests.integrations.prwatch.conftest import HOOK_SECRET, load_fixture, sign


def pull_payload(name: str, pull) -> dict:
    """A documented payload, pointed at the fake's PR."""
    payload = load_fixture(name)
    payload["number"] = pull.number
    payload["pull_request"]["number"] = pull.number
    payload["pull_request"]["html_url"] = f"https://github.com/acme/webapp/pull/{pull.number}"
    payload["pull_request"]["head"]["sha"] = pull.head_sha
    return payload


# -- refusing ----------------------------------------------------------------------------


def test_without_a_webhook_secret_every_delivery_is_refused(hooks, db):
    resp = hooks.post("ping", load_fixture("ping"))

    assert resp.status_code == 403
    body = resp.json()
    assert "GITHUB_WEBHOOK_SECRET" in body["error"] and "POST /api/secrets" in body["error"]
    assert InboundDelivery.objects.count() == 0


def test_a_delivery_without_a_signature_is_refused(hooks, hook_secret):
    resp = hooks.post("ping", load_fixture("ping"), secret=None)

    assert resp.status_code == 401
    assert "X-Hub-Signature-256" in resp.json()["error"]
    assert InboundDelivery.objects.count() == 0


@pytest.mark.parametrize(
    "signature",
    ["sha256=" + "0" * 64, sign(b"another body"), "sha1=" + "0" * 40, "sha256=", "garbage"],
)
def test_a_delivery_with_a_wrong_signature_is_refused(hooks, hook_secret, signature):
    resp = hooks.post("ping", load_fixture("ping"), signature=signature)

    assert resp.status_code == 401
    assert resp.json()["error"].startswith("The X-Hub-Signature-256 signature does not match")
    assert InboundDelivery.objects.count() == 0


def test_a_delivery_signed_with_another_secret_is_refused(hooks, hook_secret):
    assert hooks.post("ping", load_fixture("ping"), secret="not the secret").status_code == 401


def test_the_signature_is_checked_before_the_body_is_read(hooks, hook_secret):
    garbage = b"{not json"

    assert hooks.post("ping", garbage, secret="wrong").status_code == 401
    resp = hooks.post("ping", garbage)  # correctly signed, so now the body is read
    assert resp.status_code == 400
    assert "Content type to application/json" in resp.json()["error"]


def test_a_delivery_without_its_github_headers_is_a_400(client, hook_secret):
    body = json.dumps(load_fixture("ping")).encode()
    resp = client.post("/hooks/github", body, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=sign(body))

    assert resp.status_code == 400
    assert "X-GitHub-Delivery" in resp.json()["error"]


def test_only_post_is_accepted(client):
    assert client.get("/hooks/github").status_code == 405


# -- acknowledging -----------------------------------------------------------------------


def test_ping_answers_ok(hooks, hook_secret):
    resp = hooks.post("ping", load_fixture("ping"), delivery="ping-1")

    assert resp.status_code == 200
    assert resp.json()["ok"] is True
    assert resp.json()["zen"] == "Anything added dilutes everything else."
    assert InboundDelivery.objects.get(delivery_id="ping-1").status == "processed"


def test_an_unknown_event_is_acknowledged_and_ignored(hooks, hook_secret, repo, gh):
    resp = hooks.post("push", load_fixture("push"), delivery="push-1")

    assert resp.status_code == 200
    assert resp.json()["ignored"] == "Optio does not use push events."
    assert InboundDelivery.objects.get(delivery_id="push-1").status == "ignored"
    assert gh.requests == []


def test_an_action_optio_does_not_act_on_is_ignored(hooks, hook_secret, pull, task):
    payload = pull_payload("pull_request.synchronize", pull)
    payload["action"] = "labeled"

    resp = hooks.post("pull_request", payload)

    assert resp.json()["ignored"] == "Optio does not act on pull_request.labeled."


def test_a_delivery_for_a_repository_not_connected_is_ignored(hooks, hook_secret, db):
    resp = hooks.post("pull_request", load_fixture("pull_request.closed"))

    assert resp.status_code == 200
    assert resp.json()["ignored"] == "acme/webapp is not connected to Optio."


def test_a_form_encoded_delivery_is_read_too(hooks, hook_secret):
    body = urlencode({"payload": json.dumps(load_fixture("ping"))}).encode()

    resp = hooks.post("ping", body, content_type="application/x-www-form-urlencoded")

    assert resp.status_code == 200 and resp.json()["ok"] is True


# -- acting ------------------------------------------------------------------------------


def test_a_hook_for_a_merged_pr_completes_the_task_without_the_poller(
    hooks, hook_secret, gh, pull, task, django_capture_on_commit_callbacks
):
    gh.merge_pull("acme/webapp", pull.number)
    payload = pull_payload("pull_request.closed", pull)

    with django_capture_on_commit_callbacks(execute=True):
        resp = hooks.post("pull_request", payload, delivery="merged-1")

    assert resp.status_code == 202
    task = Task.objects.get(pk=task.pk)
    assert task.state == "completed"
    assert Event.objects.filter(task=task, name="task.completed").count() == 1
    row = InboundDelivery.objects.get(delivery_id="merged-1")
    assert (row.event, row.action, row.status) == ("pull_request", "closed", "processed")
    assert row.detail == f"task {task.pk}: transitioned → completed"


def test_a_redelivered_hook_is_processed_once(hooks, hook_secret, gh, pull, task, django_capture_on_commit_callbacks):
    gh.merge_pull("acme/webapp", pull.number)
    payload = pull_payload("pull_request.closed", pull)

    with django_capture_on_commit_callbacks(execute=True):
        first = hooks.post("pull_request", payload, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    asked = len(gh.requests)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = hooks.post("pull_request", payload, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["duplicate"] is True
    assert callbacks == []
    assert len(gh.requests) == asked
    assert InboundDelivery.objects.count() == 1


def test_a_failed_check_run_needs_attention_at_once(
    hooks, hook_secret, gh, pull, task, django_capture_on_commit_callbacks
):
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="failure")
    payload = load_fixture("check_run.completed")
    payload["check_run"]["head_sha"] = pull.head_sha
    payload["check_run"]["pull_requests"][0]["number"] = pull.number

    with django_capture_on_commit_callbacks(execute=True):
        hooks.post("check_run", payload)

    task = Task.objects.get(pk=task.pk)
    assert (task.state, task.attention_reason) == ("needs_attention", "ci_failed")


def test_a_check_suite_from_a_fork_finds_the_task_by_its_head_commit(
    hooks, hook_secret, gh, pull, task, django_capture_on_commit_callbacks
):
    from integrations.prwatch import watcher

    watcher.check_task(task.pk)  # the watcher has seen the head commit once
    gh.add_check_run("acme/webapp", pull.head_sha, "test", conclusion="failure")
    payload = load_fixture("check_suite.completed")
    payload["check_suite"]["head_sha"] = pull.head_sha
    payload["check_suite"]["pull_requests"] = []  # GitHub leaves this empty for PRs from forks

    with django_capture_on_commit_callbacks(execute=True):
        hooks.post("check_suite", payload)

    assert Task.objects.get(pk=task.pk).state == "needs_attention"


def test_a_submitted_change_request_needs_attention_at_once(
    hooks, hook_secret, gh, pull, task, django_capture_on_commit_callbacks
):
    gh.add_review("acme/webapp", pull.number, "alice", "CHANGES_REQUESTED", "Please also reject two @ signs.")
    payload = pull_payload("pull_request_review.submitted", pull)

    with django_capture_on_commit_callbacks(execute=True):
        hooks.post("pull_request_review", payload)

    task = Task.objects.get(pk=task.pk)
    assert (task.state, task.attention_reason) == ("needs_attention", "changes_requested")
    assert task.error == "Changes requested by alice: Please also reject two @ signs."


def test_a_hook_for_a_pr_no_task_waits_on_does_nothing(
    hooks, hook_secret, gh, pull, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        hooks.post("pull_request", pull_payload("pull_request.synchronize", pull), delivery="sync-1")

    assert InboundDelivery.objects.get(delivery_id="sync-1").detail == "No task is waiting on this pull request."
    assert gh.requests_to("/pulls/") == []


def test_a_repositorys_own_secret_speaks_only_for_that_repository(hooks, gh, db):
    webapp = Repo.objects.create(url="https://github.com/acme/webapp")
    other = Repo.objects.create(url="https://github.com/acme/api")
    secrets.set_secret("GITHUB_WEBHOOK_SECRET", "api-only", repo=other)
    payload = load_fixture("pull_request.closed")  # about acme/webapp

    assert hooks.post("pull_request", payload, secret="api-only").status_code == 403

    secrets.set_secret("GITHUB_WEBHOOK_SECRET", "webapp-only", repo=webapp)
    assert hooks.post("pull_request", payload, secret="webapp-only").status_code in (200, 202)


def test_an_opened_issue_syncs_the_ticket_provider_reading_that_repository(
    hooks, hook_secret, gh, repo, github_token, django_capture_on_commit_callbacks
):
    from tickets import services

    provider = services.create_provider("github", {"repos": [repo.url], "labels": ["optio"]}).provider
    gh.add_issue("acme/webapp", "Unrelated")
    gh.add_issue("acme/webapp", "Unrelated too")
    gh.add_issue("acme/webapp", "Reject emails without a domain", labels=["optio"])

    with django_capture_on_commit_callbacks(execute=True):
        resp = hooks.post("issues", load_fixture("issues.opened"), delivery="issue-3")

    assert resp.status_code == 202
    task = Task.objects.get(ticket_source="github", ticket_external_id="3")
    assert task.title == "Reject emails without a domain"
    assert InboundDelivery.objects.get(delivery_id="issue-3").detail == f"Syncing ticket provider(s) {provider.pk}."


def test_a_labeled_issue_triggers_a_sync_too(
    hooks, hook_secret, gh, repo, github_token, django_capture_on_commit_callbacks
):
    from tickets.models import TicketProvider

    with django_capture_on_commit_callbacks(execute=True):
        resp = hooks.post("issues", load_fixture("issues.labeled"), delivery="label-1")

    assert resp.status_code == 202
    assert not TicketProvider.objects.exists()
    assert InboundDelivery.objects.get(delivery_id="label-1").detail == (
        "No enabled GitHub ticket provider reads acme/webapp."
    )


def test_the_answer_does_not_wait_for_the_work(hooks, hook_secret, gh, pull, task):
    # Without running on-commit callbacks nothing has been asked of GitHub yet: the work is queued.
    resp = hooks.post("pull_request", pull_payload("pull_request.closed", pull), delivery="queued-1")

    assert resp.status_code == 202
    assert InboundDelivery.objects.get(delivery_id="queued-1").status == "queued"
    assert gh.requests == []


def test_secrets_never_show_in_the_answer(hooks, hook_secret):
    resp = hooks.post("ping", load_fixture("ping"), secret="wrong")

    assert HOOK_SECRET not in resp.content.decode()


def test_a_failed_commit_status_finds_the_task_by_its_head_commit(
    hooks, hook_secret, gh, pull, task, django_capture_on_commit_callbacks
):
    from integrations.prwatch import watcher

    watcher.check_task(task.pk)
    gh.add_status("acme/webapp", pull.head_sha, "ci/jenkins", "failure", "Build #812 failed")
    payload = load_fixture("status")
    payload["sha"] = pull.head_sha

    with django_capture_on_commit_callbacks(execute=True):
        hooks.post("status", payload)

    task = Task.objects.get(pk=task.pk)
    assert (task.state, task.attention_reason) == ("needs_attention", "ci_failed")
    assert task.pr_status["checks"]["failing"] == ["ci/jenkins"]


def test_old_deliveries_are_pruned(hooks, hook_secret):
    from datetime import timedelta

    from django.utils import timezone

    from integrations.prwatch import deliveries

    hooks.post("ping", load_fixture("ping"), delivery="old")
    hooks.post("ping", load_fixture("ping"), delivery="new")
    InboundDelivery.objects.filter(delivery_id="old").update(received_at=timezone.now() - timedelta(days=31))

    assert deliveries.prune() == 1
    assert list(InboundDelivery.objects.values_list("delivery_id", flat=True)) == ["new"]
