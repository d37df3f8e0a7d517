"""Management commands: bootstrap (first run only) and create_api_token."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from optio.models import ApiToken, hash_token

User = get_user_model()


def run(*args, **options) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


def _works(raw: str) -> bool:
    return APIClient().get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200


def test_bootstrap_prints_a_working_login_and_token_once(db, client):
    first = run("bootstrap", url="http://127.0.0.1:9123")

    password = re.search(r"sign in as admin / (\S+)", first)[1]
    token = re.search(r"API token:\s+(optio_\S+)", first)[1]
    assert "http://127.0.0.1:9123/api/tasks" in first
    assert client.login(username="admin", password=password)
    assert _works(token)
    assert User.objects.get(username="admin").is_superuser

    second = run("bootstrap")
    assert second == ""
    assert User.objects.count() == 1
    assert ApiToken.objects.count() == 1


def test_bootstrap_keeps_a_plain_user_called_admin(db):
    User.objects.create_user("admin", password="someone's own password")
    out = run("bootstrap")
    assert "sign in as optio-admin /" in out
    assert User.objects.get(username="optio-admin").is_superuser
    assert not User.objects.get(username="admin").is_superuser


def test_create_api_token_prints_a_token_stored_only_as_a_hash(admin_user):
    raw = run("create_api_token", "admin", "--name", "ci runner").strip()

    assert raw.startswith("optio_") and len(raw) > 40
    token = ApiToken.objects.get(user=admin_user)
    assert token.name == "ci runner"
    assert token.key_hash == hash_token(raw) != raw
    assert token.expires_at is None
    assert _works(raw)


def test_create_api_token_with_expiry(admin_user):
    raw = run("create_api_token", "admin", "--expires-in-days", "7").strip()
    token = ApiToken.objects.get(key_hash=hash_token(raw))
    assert timedelta(days=6, hours=23) < token.expires_at - timezone.now() <= timedelta(days=7)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody"], "No user named 'nobody'"),
        (["admin", "--expires-in-days", "0"], "at least 1"),
    ],
)
def test_create_api_token_refuses_clearly(admin_user, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_api_token", *args)
    assert not ApiToken.objects.exists()


def test_create_api_token_refuses_an_inactive_user(admin_user):
    admin_user.is_active = False
    admin_user.save()
    with pytest.raises(CommandError, match="inactive"):
        run("create_api_token", "admin")
