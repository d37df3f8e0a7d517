"""API tokens: `Authorization: Bearer <token>` for REST, `?token=` for WebSockets."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from optio.models import ApiToken, hash_token

# Writing last_used_at on every request would turn each read into a write; a minute is precise enough.
LAST_USED_PRECISION = timedelta(minutes=1)


def user_for_token(raw: str | None):
    """The active user a raw token belongs to, or None (unknown, expired or inactive)."""
    if not raw:
        return None
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(raw)).first()
    if token is None or token.expired or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.user._api_token = token
    return token.user


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise exceptions.AuthenticationFailed("Send the API token as 'Authorization: Bearer <token>'.")
        user = user_for_token(raw.strip())
        if user is None:
            raise exceptions.AuthenticationFailed("The API token is invalid or has expired.")
        return user, user._api_token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "optio.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An Optio API token (optio_…)."}


# --- Sign-in throttling (API login and the dashboard's login form) -------------------------


def _failure_keys(address: str, username: str) -> list[tuple[str, int]]:
    """Cache keys with their limits: one stops guessing one user's password, the other one
    address trying many users. The user name is hashed: it is arbitrary text from the client."""
    user = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return [
        (f"login-fail:user:{user}", settings.OPTIO_LOGIN_MAX_FAILURES_PER_USER),
        (f"login-fail:addr:{address}", settings.OPTIO_LOGIN_MAX_FAILURES_PER_ADDRESS),
    ]


def _address(request) -> str:
    return request.META.get("REMOTE_ADDR", "")


def login_blocked(request, username: str) -> str | None:
    """A message to show if sign-in is blocked for this user name or client address, else None."""
    if any((cache.get(key) or 0) >= limit for key, limit in _failure_keys(_address(request), username)):
        minutes = max(1, round(settings.OPTIO_LOGIN_FAILURE_WINDOW / 60))
        return f"Too many failed sign-ins; wait {minutes} minute{'s' if minutes != 1 else ''} and try again."
    return None


def record_login_failure(request, username: str) -> None:
    window = settings.OPTIO_LOGIN_FAILURE_WINDOW
    for key, _ in _failure_keys(_address(request), username):
        # The window starts at the first failure (add is a no-op while the key lives).
        cache.add(key, 0, window)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, window)


def clear_login_failures(request, username: str) -> None:
    """A correct password resets the user's count (not the address's: it may be guessing others)."""
    cache.delete(_failure_keys(_address(request), username)[0][0])


def reset_login_failures(address: str, *usernames: str) -> None:
    """Forget failed sign-ins from `address` and for `usernames` (an operator unblocking, tests)."""
    keys = [f"login-fail:addr:{address}"]
    keys += [_failure_keys(address, name)[0][0] for name in usernames]
    cache.delete_many(keys)
