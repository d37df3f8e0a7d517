"""Deployment checks (`manage.py check --deploy`) for settings Django cannot know are wrong.

In production mode several processes, often on several machines, must share keys and a
database; defaults that are fine for one embedded process silently break there.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def production_settings(app_configs=None, **kwargs) -> list[Warning]:
    if settings.EMBEDDED:
        return []
    config = settings.CONFIG
    problems = []
    if not config.secret_keys:
        problems.append(
            Warning(
                "OPTIO_SECRET_KEYS is not set, so this process encrypts secrets with a key file generated "
                f"under {config.var_dir}; processes on other machines cannot read them.",
                hint="Set the same OPTIO_SECRET_KEYS on every Optio process (see README, Configuration).",
                id="optio.W001",
            )
        )
    if not config.django_secret_key:
        problems.append(
            Warning(
                f"DJANGO_SECRET_KEY is not set, so this process signs sessions with a key generated under "
                f"{config.var_dir}; other web processes will not accept them.",
                hint="Set the same DJANGO_SECRET_KEY on every Optio process.",
                id="optio.W002",
            )
        )
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        problems.append(
            Warning(
                "REDIS_URL is set (production mode) but the database is SQLite, which separate worker, "
                "beat and web processes cannot share safely.",
                hint="Point DATABASE_URL at PostgreSQL.",
                id="optio.W003",
            )
        )
    return problems


PER_PROCESS_CACHES = ("django.core.cache.backends.locmem.LocMemCache", "django.core.cache.backends.dummy.DummyCache")


@register()
def shared_cache(app_configs=None, **kwargs) -> list[Warning]:
    """The "a dispatch job is queued" flag (optio/events.py) is set by the committing process and
    cleared by the worker that runs the job, so both must see the same cache."""
    backend = settings.CACHES["default"]["BACKEND"]
    if settings.CELERY_BROKER_URL.startswith("memory://") or backend not in PER_PROCESS_CACHES:
        return []
    return [
        Warning(
            f"Celery workers run in other processes ({settings.CELERY_BROKER_URL.split('://')[0]} broker) but the "
            f"cache is per process ({backend.rsplit('.', 1)[-1]}), so a worker cannot clear the dispatch flag a web "
            "process set: events would wait for the flag to expire or for the sweeper.",
            hint="Use a shared cache (Optio's production settings use Redis for both).",
            id="optio.W004",
        )
    ]
