"""The Django admin: every model of every Optio app is registered, and every page of it renders."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from optio import lifecycle, logs
from optio import secrets as secret_service
from optio.models import ApiToken, Task

OPTIO_APPS = {"optio", "tickets", "webhooks", "github", "linear", "slack", "mcp", "prwatch"}

REGISTERED = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def test_every_optio_model_is_in_the_admin():
    missing = [
        model._meta.label
        for app in apps.get_app_configs()
        if app.label in OPTIO_APPS
        for model in app.get_models()
        if not admin.site.is_registered(model)
    ]
    assert not missing, f"register these in their app's admin.py: {missing}"


@pytest.fixture
def populated(repo, admin_user):
    """One of each core object, so list displays and filters render real rows."""
    task = lifecycle.create_task(repo, "Populated", "p", ticket_source="github", ticket_external_id="1")
    lifecycle.transition(task, "running")
    logs.append(task, [{"content": "hello", "type": "text", "stream": "stdout", "metadata": {}}])
    secret_service.set_secret("TOKEN", "value", repo)
    ApiToken.objects.issue(admin_user, name="admin test")
    return task


@pytest.mark.parametrize(
    "model_admin", [ma for _, ma in REGISTERED], ids=[model._meta.label for model, _ in REGISTERED]
)
def test_changelist_search_and_add_pages_answer_200(client, admin_user, populated, model_admin):
    client.force_login(admin_user)
    opts = model_admin.model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")

    assert client.get(changelist).status_code == 200
    if model_admin.search_fields:
        assert client.get(changelist, {"q": "populated"}).status_code == 200
    add = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
    assert add.status_code == (200 if model_admin.has_add_permission(_request(admin_user)) else 403)
    first = model_admin.model._default_manager.first()
    if first is not None:
        change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[first.pk])
        assert client.get(change).status_code == 200


def _request(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_admin_index_lists_the_core_models(client, admin_user):
    client.force_login(admin_user)
    page = client.get("/admin/").content.decode()
    for name in ("Repos", "Secrets", "Tasks", "Task logs", "Events", "Api tokens"):
        assert name in page


def test_task_state_cannot_be_edited_in_the_admin(client, admin_user, populated):
    client.force_login(admin_user)
    page = client.get(f"/admin/optio/task/{populated.pk}/change/").content.decode()
    assert 'name="state"' not in page
    assert Task.objects.get(pk=populated.pk).state == "running"


def test_filters_render(client, admin_user, populated):
    client.force_login(admin_user)
    assert client.get("/admin/optio/task/", {"state": "running"}).status_code == 200
    assert client.get("/admin/optio/event/", {"dispatched_at__isnull": "True"}).status_code == 200
    assert client.get("/admin/optio/tasklog/", {"stream": "stdout"}).status_code == 200
