"""API authentication: every /api/ route needs a token; login, logout, me; tokens; throttling."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from rest_framework.test import APIClient

from optio.auth import reset_login_failures
from optio.models import ApiToken

# Routes that answer without a token, by design (DESIGN.md, API conventions).
PUBLIC = {"/api/health", "/api/auth/login"}
METHODS = ("get", "post", "put", "patch", "delete")

_CANDIDATES = ("1", str(uuid.UUID(int=1)), "sample", "sample-1", "a/b")
_ROUTE_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
_REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?P<regex>[^)]*)\)")


def _sample_for_converter(converter) -> str:
    for candidate in _CANDIDATES:
        if re.fullmatch(converter.regex, candidate):
            try:
                converter.to_python(candidate)
            except ValueError:
                continue
            return candidate
    raise AssertionError(f"no sample value fits path converter {converter!r}; add one to _CANDIDATES")


def _fill(pattern) -> str:
    """The concrete text of one pattern piece, path converters filled with sample values."""
    route = getattr(pattern, "_route", None)
    if route is not None:  # path()
        return _ROUTE_PARAM.sub(lambda m: _sample_for_converter(pattern.converters[m["name"]]), route)
    regex = pattern.regex.pattern  # re_path()

    def group(m):
        for candidate in _CANDIDATES:
            if re.fullmatch(m["regex"], candidate):
                return candidate
        raise AssertionError(f"no sample value fits {m[0]} in {regex!r}")

    text = _REGEX_GROUP.sub(group, regex).lstrip("^").rstrip("$").replace("\\Z", "")
    assert "(" not in text and "[" not in text, f"cannot fill regex URL pattern {regex!r}"
    return text.replace("\\", "")


def _walk(patterns, prefix=()):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, (*prefix, p.pattern))
        elif isinstance(p, URLPattern):
            yield (*prefix, p.pattern)


def _raw(pieces) -> str:
    return "".join(str(piece).lstrip("^") for piece in pieces)


def api_routes() -> list[str]:
    """Every /api/ URL the project serves, from the resolver: routes added later are included."""
    chains = [c for c in _walk(get_resolver().url_patterns) if _raw(c).startswith("api/")]
    return sorted({"/" + "".join(_fill(piece) for piece in chain) for chain in chains})


PROTECTED = [p for p in api_routes() if p not in PUBLIC]


def test_enumeration_finds_the_core_routes_and_they_resolve():
    routes = api_routes()
    for expected in ("/api/health", "/api/auth/login", "/api/auth/me", "/api/schema", "/api/repos", "/api/tasks"):
        assert expected in routes
    assert any(re.fullmatch(r"/api/tasks/[0-9a-f-]{36}/logs", r) for r in routes)
    for route in routes:
        resolve(route)  # the sample values really match the pattern


def _assert_401(resp, route: str, method: str) -> None:
    assert resp.status_code == 401, f"{method.upper()} {route} answered {resp.status_code} without a valid token"
    body = json.loads(resp.content)
    assert body["error"] and "details" in body, f"{method.upper()} {route}: {body}"
    assert resp.has_header("WWW-Authenticate"), f"{method.upper()} {route}: a 401 must say how to authenticate"


@pytest.mark.parametrize("route", PROTECTED)
def test_every_api_route_needs_a_token(db, route):
    client = APIClient()
    for method in METHODS:
        body = {} if method == "get" else {"data": "{}", "content_type": "application/json"}
        resp = getattr(client, method)(route, **body)
        _assert_401(resp, route, method)


@pytest.mark.parametrize("route", PROTECTED)
@pytest.mark.parametrize(
    "header", ["Bearer optio_not-a-real-token", "Bearer ", "Token abc", "Basic YWRtaW46YWRtaW4="], ids=str
)
def test_every_api_route_refuses_a_bad_token(db, route, header):
    resp = APIClient().get(route, HTTP_AUTHORIZATION=header)
    _assert_401(resp, route, "get")


def test_public_routes_answer_without_a_token(db):
    assert APIClient().get("/api/health").status_code == 200
    assert APIClient().post("/api/auth/login", {}, format="json").status_code == 400  # reached the view


# --- login / logout / me ------------------------------------------------------------------


@pytest.fixture
def address():
    """A client address of this test's own, so throttle counters never leak between tests."""
    addr = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    yield addr
    reset_login_failures(addr, "admin", "nobody")


def login(username: str, password: str, address: str):
    return APIClient().post(
        "/api/auth/login", {"username": username, "password": password}, format="json", REMOTE_ADDR=address
    )


def test_login_returns_a_working_session_token_stored_only_as_a_hash(admin_user, address):
    resp = login("admin", "correct horse battery", address)
    assert resp.status_code == 200, resp.content
    body = resp.json()
    raw = body["token"]
    assert raw.startswith("optio_")
    assert body["user"] == {"id": admin_user.pk, "username": "admin", "isStaff": True}
    expires = timezone.datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    assert timedelta(days=29) < expires - timezone.now() <= timedelta(days=30)

    token = ApiToken.objects.get(user=admin_user)
    assert token.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM optio_apitoken")
        stored = " ".join(str(v) for row in cursor.fetchall() for v in row)
    assert raw not in stored

    me = APIClient().get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert me.status_code == 200
    assert me.json() == {"id": admin_user.pk, "username": "admin", "isStaff": True}


def test_logout_revokes_the_token_it_was_called_with(admin_user, address):
    raw = login("admin", "correct horse battery", address).json()["token"]
    other = login("admin", "correct horse battery", address).json()["token"]
    client = APIClient()

    assert client.post("/api/auth/logout", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 204

    assert client.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    assert client.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {other}").status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": "admin", "password": "wrong"}, 401),
        ({"username": "nobody", "password": "correct horse battery"}, 401),
        ({"username": "admin"}, 400),
        ({"password": "x"}, 400),
        ({"username": ["admin"], "password": "x"}, 400),
    ],
)
def test_login_failures_are_clear_and_issue_no_token(admin_user, address, body, status):
    resp = APIClient().post("/api/auth/login", body, format="json", REMOTE_ADDR=address)
    assert resp.status_code == status
    assert resp.json()["error"]
    assert not ApiToken.objects.exists()


def test_inactive_user_cannot_log_in_or_use_an_old_token(admin_user, address, api):
    admin_user.is_active = False
    admin_user.save()
    assert login("admin", "correct horse battery", address).status_code == 401
    assert api.get("/api/auth/me").status_code == 401


# --- throttling -------------------------------------------------------------------------


def test_repeated_failed_logins_are_throttled_then_allowed_after_the_window(admin_user, address, settings):
    settings.OPTIO_LOGIN_FAILURE_WINDOW = 2  # seconds; the real window is 15 minutes
    for _ in range(settings.OPTIO_LOGIN_MAX_FAILURES_PER_USER):
        assert login("admin", "wrong", address).status_code == 401

    blocked = login("admin", "correct horse battery", address)  # even the right password
    assert blocked.status_code == 429
    assert "Too many failed sign-ins" in blocked.json()["error"]
    assert not ApiToken.objects.exists()

    time.sleep(2.2)
    assert login("admin", "correct horse battery", address).status_code == 200


def test_throttle_by_user_name_holds_across_addresses(admin_user, address, settings):
    for i in range(settings.OPTIO_LOGIN_MAX_FAILURES_PER_USER):
        assert login("admin", "wrong", f"{address[:-1]}{i}").status_code == 401
    assert login("admin", "correct horse battery", address).status_code == 429
    for i in range(settings.OPTIO_LOGIN_MAX_FAILURES_PER_USER):
        reset_login_failures(f"{address[:-1]}{i}")


def test_throttle_by_address_holds_across_user_names(admin_user, address, settings):
    settings.OPTIO_LOGIN_MAX_FAILURES_PER_ADDRESS = 3
    for name in ("a", "b", "c"):
        assert login(f"guess-{name}", "wrong", address).status_code == 401
    assert login("admin", "correct horse battery", address).status_code == 429
    reset_login_failures(address, *(f"guess-{n}" for n in "abc"))


def test_a_correct_login_resets_the_user_count(admin_user, address, settings):
    limit = settings.OPTIO_LOGIN_MAX_FAILURES_PER_USER
    for _ in range(limit - 1):
        login("admin", "wrong", address)
    assert login("admin", "correct horse battery", address).status_code == 200
    for _ in range(limit - 1):
        assert login("admin", "wrong", address).status_code == 401
    assert login("admin", "correct horse battery", address).status_code == 200


def test_dashboard_sign_in_is_throttled_too(client, admin_user, address, settings):
    settings.OPTIO_LOGIN_FAILURE_WINDOW = 2
    form = {"username": "admin", "password": "wrong"}
    for _ in range(settings.OPTIO_LOGIN_MAX_FAILURES_PER_USER):
        page = client.post("/login/", form, REMOTE_ADDR=address)
        assert page.status_code == 200
        assert "Wrong username or password" in page.content.decode()
    blocked = client.post("/login/", {**form, "password": "correct horse battery"}, REMOTE_ADDR=address)
    assert blocked.status_code == 429
    assert "Too many failed sign-ins" in blocked.content.decode()
    assert "_auth_user_id" not in client.session

    time.sleep(2.2)
    ok = client.post("/login/", {**form, "password": "correct horse battery"}, REMOTE_ADDR=address)
    assert ok.status_code == 302
    assert client.session["_auth_user_id"] == str(admin_user.pk)


# --- tokens --------------------------------------------------------------------------------


def _me(raw: str):
    return APIClient().get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {raw}")


def test_expired_tokens_are_refused_and_future_expiry_is_honoured(admin_user):
    _, expired = ApiToken.objects.issue(admin_user, expires_at=timezone.now() - timedelta(seconds=1))
    _, valid = ApiToken.objects.issue(admin_user, expires_at=timezone.now() + timedelta(hours=1))
    assert _me(expired).status_code == 401
    assert _me(valid).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        assert _me(valid).status_code == 401


def test_last_used_is_recorded_at_most_once_a_minute(admin_user):
    token, raw = ApiToken.objects.issue(admin_user)
    assert token.last_used_at is None

    start = timezone.now()
    with time_machine.travel(start, tick=False):
        _me(raw)
    token.refresh_from_db()
    assert token.last_used_at == start

    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        _me(raw)
    token.refresh_from_db()
    assert token.last_used_at == start  # no write for every request

    later = start + timedelta(minutes=2)
    with time_machine.travel(later, tick=False):
        _me(raw)
    token.refresh_from_db()
    assert token.last_used_at == later


def test_bearer_scheme_is_case_insensitive(admin_user):
    _, raw = ApiToken.objects.issue(admin_user)
    assert APIClient().get("/api/auth/me", HTTP_AUTHORIZATION=f"bearer {raw}").status_code == 200


def test_the_schema_and_docs_accept_a_dashboard_session(client, admin_user):
    client.force_login(admin_user)
    assert client.get("/api/schema").status_code == 200
    assert client.get("/api/docs").status_code == 200
