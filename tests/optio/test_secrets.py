"""Secrets: encrypted at rest, write-only in the API, readable across a key rotation."""

from __future__ import annotations

import dataclasses
import stat

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from optio import crypto
from optio import secrets as secret_service
from optio.models import Repo, Secret
from tests.optio.conftest import clean_env, manage

PLAINTEXT = "ghp_Plaintext-Value-1234567890"


@pytest.fixture
def keys(settings):
    """Set OPTIO_SECRET_KEYS as the running process sees it (settings.CONFIG), like a restart would."""

    def use(*keys: str) -> None:
        settings.CONFIG = dataclasses.replace(settings.CONFIG, secret_keys=tuple(keys))
        crypto.reset_keys()

    return use


def raw_rows() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM optio_secret")
        return cursor.fetchall()


def test_database_column_holds_no_plaintext(db, keys):
    keys(Fernet.generate_key().decode())
    secret_service.set_secret("GITHUB_TOKEN", PLAINTEXT)

    rows = raw_rows()
    assert len(rows) == 1
    everything = " ".join(str(v) for v in rows[0])
    assert PLAINTEXT not in everything
    assert PLAINTEXT.lower() not in everything.lower()
    with connection.cursor() as cursor:
        cursor.execute("SELECT value_encrypted FROM optio_secret")
        (stored,) = cursor.fetchone()
    assert stored.startswith("gAAAA")  # a Fernet token
    assert secret_service.get_value("GITHUB_TOKEN") == PLAINTEXT


def test_updating_a_secret_reencrypts_and_keeps_one_row(db, keys):
    keys(Fernet.generate_key().decode())
    first, created = secret_service.set_secret("TOKEN", "one")
    again, created_again = secret_service.set_secret("TOKEN", "two")
    assert (created, created_again) == (True, False)
    assert first.pk == again.pk
    assert Secret.objects.count() == 1
    assert secret_service.get_value("TOKEN") == "two"


def test_key_rotation_in_process_keeps_values_readable(db, keys, repo):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    keys(old)
    secret_service.set_secret("GLOBAL_TOKEN", "global-value")
    secret_service.set_secret("REPO_TOKEN", "repo-value", repo)
    before = {name: token for name, token in Secret.objects.values_list("name", "value_encrypted")}

    keys(new, old)
    from django.core.management import call_command

    call_command("rotate_secret_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115

    keys(new)  # the old key is gone
    assert secret_service.get_value("GLOBAL_TOKEN") == "global-value"
    assert secret_service.get_value("REPO_TOKEN", repo) == "repo-value"
    for name, token in Secret.objects.values_list("name", "value_encrypted"):
        assert token != before[name]
        Fernet(new.encode()).decrypt(token.encode())  # readable with the new key alone


def test_dropping_the_old_key_without_rotating_makes_values_unreadable(db, keys):
    """The counter-test: rotation is what keeps values readable, not luck."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    keys(old)
    secret_service.set_secret("TOKEN", "value")
    keys(new)
    with pytest.raises(ValueError, match="OPTIO_SECRET_KEYS"):
        secret_service.get_value("TOKEN")


def _database_url() -> str:
    """The test database as a DATABASE_URL, so a manage.py subprocess sees the same rows."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_rotation_with_the_real_commands_and_environment(keys, tmp_path):
    """The operator's steps: new key first in OPTIO_SECRET_KEYS, rotate, then drop the old key."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    keys(old)
    secret_service.set_secret("DEPLOY_TOKEN", PLAINTEXT)
    env = clean_env(DATABASE_URL=_database_url(), OPTIO_VAR_DIR=str(tmp_path))

    rotated = manage("rotate_secret_keys", env={**env, "OPTIO_SECRET_KEYS": f"{new},{old}"})
    assert rotated.returncode == 0, rotated.stderr
    assert "Re-encrypted 1 secret(s)" in rotated.stdout

    read = manage(
        "shell",
        "--no-imports",
        "-c",
        "from optio.secrets import get_value; print(get_value('DEPLOY_TOKEN'))",
        env={**env, "OPTIO_SECRET_KEYS": new},
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == PLAINTEXT

    stale = manage(
        "shell",
        "--no-imports",
        "-c",
        "from optio.secrets import get_value; print(get_value('DEPLOY_TOKEN'))",
        env={**env, "OPTIO_SECRET_KEYS": old},
    )
    assert stale.returncode != 0
    assert "cannot be decrypted with the configured OPTIO_SECRET_KEYS" in stale.stderr


def test_embedded_mode_generates_one_private_key_file(db, keys, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    keys()  # no OPTIO_SECRET_KEYS
    token = crypto.encrypt("value")
    key_file = tmp_path / "secret-keys"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    crypto.reset_keys()  # a restart reads the same file
    assert crypto.decrypt(token) == "value"
    assert key_file.read_text().strip() == key_file.read_text().strip().split()[0]


def test_repository_secret_overrides_the_global_one(db, keys, repo):
    keys(Fernet.generate_key().decode())
    other = Repo.objects.create(url="https://github.com/acme/other")
    secret_service.set_secret("TOKEN", "global")
    secret_service.set_secret("TOKEN", "webapp-only", repo)
    assert secret_service.get_value("TOKEN", repo) == "webapp-only"
    assert secret_service.get_value("TOKEN", other) == "global"
    assert secret_service.get_value("TOKEN") == "global"
    assert secret_service.get_value("MISSING", repo) is None
    values, missing = secret_service.resolve_many({"TOKEN", "MISSING"}, repo)
    assert values == {"TOKEN": "webapp-only"}
    assert missing == ["MISSING"]


@pytest.mark.parametrize("name", ["", "1TOKEN", "MY-TOKEN", "with space", "x" * 129, "tök"])
def test_invalid_secret_names_are_refused(db, name):
    with pytest.raises(secret_service.InvalidSecretName):
        secret_service.set_secret(name, "value")
    assert not Secret.objects.exists()


# --- REST API: write-only values ----------------------------------------------------------


def test_api_creates_updates_lists_and_deletes_without_ever_returning_the_value(api, repo):
    created = api.post("/api/secrets", {"name": "GITHUB_TOKEN", "value": PLAINTEXT})
    assert created.status_code == 201, created.content
    assert created.json()["scope"] == "global"
    assert created.json()["repoUrl"] is None
    scoped = api.post(
        "/api/secrets", {"name": "GITHUB_TOKEN", "value": PLAINTEXT + "-repo", "repoUrl": "git@github.com:acme/webapp"}
    )
    assert scoped.status_code == 201
    assert scoped.json()["scope"] == scoped.json()["repoUrl"] == "https://github.com/acme/webapp"
    updated = api.post("/api/secrets", {"name": "GITHUB_TOKEN", "value": "rotated"})
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]

    listed = api.get("/api/secrets")
    detail = api.get(f"/api/secrets/{created.json()['id']}")
    for resp in (created, scoped, updated, listed, detail):
        assert PLAINTEXT not in resp.content.decode()
        assert "rotated" not in resp.content.decode()
        assert "value" not in resp.content.decode().replace('"', " ").split()
    assert {(s["name"], s["scope"]) for s in listed.json()["results"]} == {
        ("GITHUB_TOKEN", "global"),
        ("GITHUB_TOKEN", "https://github.com/acme/webapp"),
    }
    assert set(listed.json()["results"][0]) == {"id", "name", "scope", "repoUrl", "createdAt", "updatedAt"}
    assert secret_service.get_value("GITHUB_TOKEN") == "rotated"

    assert api.delete(f"/api/secrets/{created.json()['id']}").status_code == 204
    assert secret_service.get_value("GITHUB_TOKEN") is None
    assert api.get(f"/api/secrets/{created.json()['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "TOKEN"}, "value"),
        ({"value": "v"}, "name"),
        ({"name": "TOKEN", "value": ""}, "value"),
        ({"name": "bad-name", "value": "v"}, "name"),
        ({"name": "TOKEN", "value": "v", "repoUrl": "https://github.com/acme"}, "repoUrl"),
        ({"name": "TOKEN", "value": "v", "repoUrl": "https://github.com/not/connected"}, "repoUrl"),
        ({"name": "TOKEN", "value": 12}, None),
    ],
)
def test_api_rejects_bad_secrets_with_a_400_naming_the_field(api, repo, body, field):
    resp = api.post("/api/secrets", body)
    if field is None:  # DRF's CharField accepts numbers as strings; that is fine, but never a 500
        assert resp.status_code in (200, 201)
        return
    assert resp.status_code == 400, resp.content
    assert field in resp.json()["details"]
    assert not Secret.objects.exists()


def test_admin_never_shows_the_value(client, admin_user, keys):
    keys(Fernet.generate_key().decode())
    secret, _ = secret_service.set_secret("TOKEN", PLAINTEXT)
    client.force_login(admin_user)
    for url in ("/admin/optio/secret/", f"/admin/optio/secret/{secret.pk}/change/"):
        page = client.get(url)
        assert page.status_code == 200
        assert PLAINTEXT not in page.content.decode()
        assert secret.value_encrypted not in page.content.decode()
