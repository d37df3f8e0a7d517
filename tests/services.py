"""Real services the suite may need. Locally a missing one skips; in CI (OPTIO_REQUIRE_SERVICES=1) it fails."""

from __future__ import annotations

import os
import shutil
import socket
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection

CHROMIUM = os.environ.get("OPTIO_CHROMIUM", "/usr/bin/chromium")


def _missing(what: str) -> None:
    if os.environ.get("OPTIO_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required in CI but is not available", pytrace=False)
    pytest.skip(f"needs {what}")


def require_postgres() -> None:
    if connection.vendor != "postgresql":
        _missing("PostgreSQL (set DATABASE_URL=postgres://...)")


def redis_url() -> str:
    url = settings.CONFIG.redis_url
    if not url:
        _missing("Redis (set REDIS_URL=redis://...)")
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=2).close()
    except OSError:
        _missing(f"Redis at {url}")
    return url


def require_chromium() -> str:
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        _missing("Chromium at /usr/bin/chromium (apt-get install chromium)")
    return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
