"""Configuration from the environment: clear start-up errors, the two modes, `check --deploy`."""

from __future__ import annotations

import json
import secrets

import pytest
from cryptography.fernet import Fernet

from optio.config import ConfigError, load, redact
from tests.optio.conftest import clean_env, manage

STRONG_SECRET_KEY = secrets.token_urlsafe(64)


# --- start-up errors name the variable (real processes) -----------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("OPTIO_TICKET_SYNC_INTERVAL", "every minute", "whole number of seconds"),
        ("OPTIO_TICKET_SYNC_INTERVAL", "0", "at least 1 second"),
        ("OPTIO_SECRET_KEYS", "not-a-fernet-key", "not a Fernet key"),
        ("DATABASE_URL", "mysql://db.example.com/optio", "postgres://"),
        ("DATABASE_URL", "postgres://optio:hunter2@db.example.com:notaport/optio", "not a valid URL"),
        ("OPTIO_VAR_DIR", "/proc/optio-cannot-live-here", "cannot be created"),
    ],
)
def test_bad_configuration_stops_start_up_naming_the_variable(tmp_path, variable, value, says):
    env = clean_env(OPTIO_VAR_DIR=str(tmp_path))
    env[variable] = value

    result = manage("check", env=env, timeout=60)

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"Optio configuration error: {variable}")
    assert says in last_line
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr  # a password in DATABASE_URL never reaches a log


def test_good_configuration_starts(tmp_path):
    env = clean_env(OPTIO_VAR_DIR=str(tmp_path), OPTIO_TICKET_SYNC_INTERVAL="120")
    result = manage("check", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


# --- the parser itself (fast, in-process) ------------------------------------------------


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OPTIO_PR_WATCH_INTERVAL": "-5"}, "OPTIO_PR_WATCH_INTERVAL"),
        ({"OPTIO_PR_WATCH_INTERVAL": "1.5"}, "OPTIO_PR_WATCH_INTERVAL"),
        ({"OPTIO_SECRET_KEYS": f"{Fernet.generate_key().decode()},short"}, "OPTIO_SECRET_KEYS entry 2"),
        ({"DATABASE_URL": "garbage"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://optio@db.example.com:5432/"}, "DATABASE_URL must name a database"),
        ({"REDIS_URL": "http://cache.example.com"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://cache.example.com:port/0"}, "REDIS_URL"),
        ({"OPTIO_PUBLIC_URL": "ftp://optio.example.com"}, "OPTIO_PUBLIC_URL"),
        ({"OPTIO_PUBLIC_URL": "optio.example.com"}, "OPTIO_PUBLIC_URL"),
        ({"GITHUB_API_URL": "api.github.com"}, "GITHUB_API_URL"),
        ({"LINEAR_API_URL": "file:///etc/passwd"}, "LINEAR_API_URL"),
        ({"OPTIO_ALLOW_PRIVATE_URLS": "maybe"}, "OPTIO_ALLOW_PRIVATE_URLS"),
        ({"OPTIO_DEBUG": "2"}, "OPTIO_DEBUG"),
    ],
)
def test_each_bad_value_names_its_variable(env, variable):
    with pytest.raises(ConfigError) as info:
        load(env)
    assert str(info.value).startswith(variable)


def test_defaults_match_the_design(tmp_path):
    config = load({"OPTIO_VAR_DIR": str(tmp_path)})
    assert config.embedded
    assert config.database_url is None and config.redis_url is None
    assert config.secret_keys == ()
    assert config.public_url == "http://127.0.0.1:8000"
    assert config.github_api_url == "https://api.github.com"
    assert config.linear_api_url == "https://api.linear.app/graphql"
    assert (config.ticket_sync_interval, config.pr_watch_interval) == (60, 30)
    assert config.allow_private_urls is False
    assert config.debug is False


def test_values_are_parsed(tmp_path):
    keys = [Fernet.generate_key().decode() for _ in range(2)]
    config = load(
        {
            "DATABASE_URL": "postgres://optio:pw@db:5432/optio",
            "REDIS_URL": "redis://cache:6379/1",
            "OPTIO_SECRET_KEYS": f" {keys[0]} , {keys[1]} ,",
            "OPTIO_PUBLIC_URL": "https://optio.example.com/",
            "GITHUB_API_URL": "https://ghe.example.com/api/v3/",
            "OPTIO_TICKET_SYNC_INTERVAL": " 300 ",
            "OPTIO_ALLOW_PRIVATE_URLS": "true",
            "OPTIO_ALLOWED_HOSTS": "optio.internal, 10.0.0.5",
        }
    )
    assert not config.embedded
    assert config.secret_keys == tuple(keys)
    assert config.public_url == "https://optio.example.com"
    assert config.github_api_url == "https://ghe.example.com/api/v3"
    assert config.ticket_sync_interval == 300
    assert config.allow_private_urls is True
    # The public URL's host is always allowed, besides the listed ones.
    assert config.allowed_hosts == ("optio.internal", "10.0.0.5", "optio.example.com")


def test_redact_hides_only_the_password():
    assert redact("postgres://optio:hunter2@db:5432/optio") == "postgres://optio:***@db:5432/optio"
    assert redact("redis://cache:6379/0") == "redis://cache:6379/0"


# --- the two modes, as the real settings module builds them ------------------------------

_SHOW_SETTINGS = """
import json
from django.conf import settings
from django.db import connection
out = {
    "embedded": settings.EMBEDDED,
    "engine": settings.DATABASES["default"]["ENGINE"],
    "broker": settings.CELERY_BROKER_URL,
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "cache": settings.CACHES["default"]["BACKEND"],
    "beat": settings.CELERY_BEAT_SCHEDULER,
    "debug": settings.DEBUG,
    "hosts": settings.ALLOWED_HOSTS,
    "ssl_redirect": getattr(settings, "SECURE_SSL_REDIRECT", False),
    "redirect_exempt": getattr(settings, "SECURE_REDIRECT_EXEMPT", []),
    "secure_cookies": getattr(settings, "SESSION_COOKIE_SECURE", False),
}
if connection.vendor == "sqlite":
    with connection.cursor() as c:
        c.execute("PRAGMA journal_mode")
        out["journal_mode"] = c.fetchone()[0]
        c.execute("PRAGMA busy_timeout")
        out["busy_timeout_ms"] = c.fetchone()[0]
print(json.dumps(out))
"""


def _settings_of(env: dict) -> dict:
    result = manage("shell", "--no-imports", "-c", _SHOW_SETTINGS, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_embedded_mode_uses_sqlite_in_wal_mode_and_in_process_broker_and_layer(tmp_path):
    shown = _settings_of(clean_env(OPTIO_VAR_DIR=str(tmp_path)))
    assert shown["embedded"] is True
    assert shown["engine"] == "django.db.backends.sqlite3"
    assert shown["journal_mode"] == "wal"
    assert shown["busy_timeout_ms"] >= 5000
    assert shown["broker"].startswith("memory://")
    assert shown["layer"] == "optio.channel_layer.ThreadSafeInMemoryChannelLayer"
    assert (tmp_path / "optio.sqlite3").exists()


def test_production_mode_uses_postgres_redis_and_the_database_scheduler(tmp_path):
    shown = _settings_of(production_env(tmp_path))
    assert shown["embedded"] is False
    assert shown["engine"] == "django.db.backends.postgresql"
    assert shown["broker"] == "redis://127.0.0.1:1/0"
    assert shown["layer"].startswith("channels_redis.")
    assert shown["cache"] == "optio.cache.RedisCache"
    assert shown["beat"] == "django_celery_beat.schedulers:DatabaseScheduler"
    assert shown["debug"] is False
    assert "optio.example.com" in shown["hosts"]
    assert shown["ssl_redirect"] is True and shown["secure_cookies"] is True
    assert shown["redirect_exempt"] == ["^api/health$"]  # load balancers probe over plain HTTP


# --- manage.py check --deploy -----------------------------------------------------------


def production_env(tmp_path, **overrides: str) -> dict:
    """Production settings pointing at services that are not running: the check must not need them."""
    env = clean_env(
        OPTIO_VAR_DIR=str(tmp_path),
        DJANGO_SECRET_KEY=STRONG_SECRET_KEY,
        OPTIO_PUBLIC_URL="https://optio.example.com",
        OPTIO_SECRET_KEYS=Fernet.generate_key().decode(),
        DATABASE_URL="postgres://optio:pw@127.0.0.1:1/optio",
        REDIS_URL="redis://127.0.0.1:1/0",
    )
    env.update(overrides)
    return {k: v for k, v in env.items() if v != ""}


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env(tmp_path), timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "warning"),
    [
        ({"OPTIO_SECRET_KEYS": ""}, "optio.W001"),
        ({"DJANGO_SECRET_KEY": ""}, "optio.W002"),
        ({"DATABASE_URL": ""}, "optio.W003"),
        ({"OPTIO_PUBLIC_URL": "http://optio.example.com"}, "security.W008"),
    ],
    ids=["no-secret-keys", "no-django-key", "sqlite", "plain-http"],
)
def test_check_deploy_flags_settings_that_break_a_multi_process_deployment(tmp_path, overrides, warning):
    env = production_env(tmp_path, **overrides)
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env, timeout=90)
    assert result.returncode != 0
    assert warning in result.stdout + result.stderr


def test_a_per_process_cache_with_out_of_process_workers_is_flagged(settings):
    from optio import checks

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    [warning] = checks.shared_cache()
    assert warning.id == "optio.W004" and "dispatch flag" in warning.msg

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://x"}}
    assert checks.shared_cache() == []
    settings.CELERY_BROKER_URL = "memory://localhost/"  # embedded: the worker shares the process
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert checks.shared_cache() == []
