"""Bad input gets a 4xx with {"error": "<a sentence>", "details": {...}}; never a 500."""

from __future__ import annotations

import logging
import uuid

import pytest
from django.urls import include, path

from optio.models import Task

# A URLconf for one test: the real routes plus an API view with a bug in it.


def _crashing_view(request):
    raise RuntimeError("a bug")


urlpatterns = [path("api/_crash", _crashing_view), path("", include("optio.urls"))]


def assert_error(resp, status: int, *phrases: str) -> dict:
    assert resp.status_code == status, resp.content
    assert resp["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error", "details"}
    assert isinstance(body["error"], str) and body["error"].endswith((".", ")")), body
    assert isinstance(body["details"], dict)
    for phrase in phrases:
        assert phrase in body["error"], body
    return body


JSON_ROUTES = ["/api/tasks", "/api/repos", "/api/secrets", "/api/auth/login"]


@pytest.mark.parametrize("route", JSON_ROUTES)
@pytest.mark.parametrize("body", ['{"title": ', "{'single': 'quotes'}", "not json", '{"a": 1} trailing'])
def test_malformed_json_is_a_400_saying_so(api, route, body):
    resp = api.client.post(route, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert_error(resp, 400, "could not be parsed")


@pytest.mark.parametrize("route", JSON_ROUTES)
@pytest.mark.parametrize("body", ["[]", '"a string"', "42", "null"])
def test_json_that_is_not_an_object_is_a_400(api, route, body):
    resp = api.client.post(route, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert_error(resp, 400)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": ["a list"], "prompt": "p", "repoUrl": "https://github.com/acme/webapp"}, "title"),
        ({"title": "t", "prompt": {"an": "object"}, "repoUrl": "https://github.com/acme/webapp"}, "prompt"),
        ({"title": "t", "prompt": "p", "repoUrl": 42}, "repoUrl"),
        ({"title": "t", "prompt": "p", "repoUrl": True}, "repoUrl"),
        ({"title": "", "prompt": "p", "repoUrl": "https://github.com/acme/webapp"}, "title"),
        ({"title": "t" * 501, "prompt": "p", "repoUrl": "https://github.com/acme/webapp"}, "title"),
        ({"prompt": "p", "repoUrl": "https://github.com/acme/webapp"}, "title"),
        ({"title": "t", "prompt": "p"}, "repoUrl"),
    ],
)
def test_wrong_types_and_missing_fields_name_the_field(api, repo, body, field):
    resp = api.post("/api/tasks", body)
    error = assert_error(resp, 400, f"{field}:")
    assert field in error["details"]
    assert not Task.objects.exists()


def test_unknown_state_in_a_transition_is_a_400_listing_nothing_secret(api, make_task):
    task = make_task("running")
    resp = api.post(f"/api/tasks/{task.pk}/transition", {"state": "exploded"})
    error = assert_error(resp, 400, '"exploded" is not a task state')
    assert "state" in error["details"]


def test_unknown_state_filter_is_a_400_listing_the_states(api, db):
    error = assert_error(api.get("/api/tasks?state=exploded"), 400, '"exploded" is not a task state', "pending")
    assert error["details"] == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"state": "completed", "costUsd": "abc"}, "costUsd"),
        ({"state": "completed", "costUsd": "-1"}, "costUsd"),
        ({"state": "completed", "costUsd": "1" * 20}, "costUsd"),
        ({"state": "pr_opened", "prUrl": "not a url"}, "prUrl"),
        ({"state": ["completed"]}, "state"),
        ({}, "state"),
    ],
)
def test_bad_transition_fields_are_400s(api, make_task, body, field):
    task = make_task("running")
    assert field in assert_error(api.post(f"/api/tasks/{task.pk}/transition", body), 400)["details"]
    assert Task.objects.get(pk=task.pk).state == "running"


def test_forbidden_transition_is_a_409_listing_the_allowed_targets(api, make_task):
    task = make_task("queued")
    error = assert_error(
        api.post(f"/api/tasks/{task.pk}/transition", {"state": "completed"}), 409, "from queued to completed"
    )
    assert error["details"] == {"from": "queued", "to": "completed", "allowed": ["cancelled", "failed", "running"]}


def test_cancelling_a_finished_task_is_a_409_saying_it_is_final(api, make_task):
    task = make_task("completed")
    error = assert_error(api.post(f"/api/tasks/{task.pk}/cancel"), 409, "it is final")
    assert error["details"]["allowed"] == []


def test_oversized_body_is_a_413_before_anything_reads_it(api, repo, settings):
    too_big = b'{"title": "' + b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b'"}'
    resp = api.client.post(
        "/api/tasks", too_big, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api.token}"
    )
    assert_error(resp, 413, "too large")
    assert not Task.objects.exists()


@pytest.mark.parametrize("route", ["/api/tasks", "/api/repos", "/api/secrets", "/api/auth/login", "/hooks/anything"])
def test_every_route_has_the_same_body_limit(client, db, settings, route):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    resp = client.post(route, "x" * 1001, content_type="application/json")
    assert_error(resp, 413, "too large")


def test_oversized_log_batch_is_a_413(api, make_task, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    task = make_task("running")
    resp = api.client.post(
        f"/api/tasks/{task.pk}/logs",
        "line\n" * 300,
        content_type="application/x-ndjson",
        HTTP_AUTHORIZATION=f"Bearer {api.token}",
    )
    assert_error(resp, 413)
    assert not task.logs.exists()


def test_unsupported_media_type_is_a_415(api, repo):
    resp = api.client.post(
        "/api/tasks",
        "title=t",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Bearer {api.token}",
    )
    assert_error(resp, 415)


def test_unknown_objects_and_routes_are_json_404s(api, db):
    assert_error(api.get(f"/api/tasks/{uuid.uuid4()}"), 404)
    assert_error(api.post(f"/api/tasks/{uuid.uuid4()}/cancel"), 404)
    assert_error(api.get("/api/repos/999999"), 404)
    assert_error(api.get("/api/tasks/not-a-uuid"), 404, "no API route")
    assert_error(api.get("/api/nothing-here"), 404, "/api/docs")
    assert_error(api.get("/api/tasks?page=99"), 404)


def test_wrong_method_is_a_405(api, db):
    assert_error(api.delete("/api/tasks"), 405)
    assert_error(api.get(f"/api/tasks/{uuid.uuid4()}/cancel"), 405)


@pytest.mark.urls(__name__)
def test_a_bug_is_a_logged_json_500_not_an_html_page(api, caplog):
    with caplog.at_level(logging.ERROR, logger="optio.api.middleware"):
        resp = api.get("/api/_crash")
    assert_error(resp, 500, "internal error")
    assert "a bug" not in resp.content.decode()  # no internals in the response
    assert any("a bug" in r.getMessage() or (r.exc_info and "a bug" in str(r.exc_info[1])) for r in caplog.records)
