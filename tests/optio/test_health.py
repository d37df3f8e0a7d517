"""GET /api/health: database and broker, 503 when a dependency is down."""

from __future__ import annotations

import socket

import pytest
from rest_framework.test import APIClient

from optio.celery import app as celery_app
from tests.services import redis_url


@pytest.fixture
def broker(settings):
    """Point the Celery app at a broker URL for one test, as REDIS_URL would."""
    original = celery_app.conf.broker_url

    def use(url: str) -> None:
        settings.EMBEDDED = False
        celery_app.conf.broker_url = url

    yield use
    celery_app.conf.broker_url = original


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_health_reports_database_and_broker_without_a_token(db, settings):
    resp = APIClient().get("/api/health")
    assert resp.status_code == 200
    assert resp.json() == {
        "status": "ok",
        "mode": "embedded" if settings.EMBEDDED else "production",
        "database": "ok",
        "broker": "ok",
    }


def test_production_health_reaches_the_real_redis_broker(db, broker):
    broker(redis_url())
    body = APIClient().get("/api/health").json()
    assert (body["mode"], body["broker"], body["status"]) == ("production", "ok", "ok")


def test_unreachable_broker_in_production_mode_is_a_503(db, broker):
    broker(f"redis://127.0.0.1:{_closed_port()}/0")
    resp = APIClient().get("/api/health")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "degraded"
    assert body["mode"] == "production"
    assert body["database"] == "ok"
    assert body["broker"].startswith("error: ")
    assert "127.0.0.1" not in body["broker"]  # the kind of failure, not the infrastructure's addresses
