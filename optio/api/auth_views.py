"""Login for API clients: exchange a username and password for a session token."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import authenticate
from django.core.cache import cache
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from optio.api.errors import ApiError
from optio.models import ApiToken

SESSION_TOKEN_LIFETIME = timedelta(days=30)
MAX_FAILURES = 5
FAILURE_WINDOW = 15 * 60  # seconds


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1024, trim_whitespace=False)


def _user_json(user) -> dict:
    return {"id": user.pk, "username": user.username, "isStaff": user.is_staff}


def _failure_keys(request, username: str) -> list[str]:
    ip = request.META.get("REMOTE_ADDR", "")
    # Both keys: one stops guessing many passwords for one user, the other one address trying many users.
    return [f"login-fail:user:{username.lower()}", f"login-fail:ip:{ip}"]


class Login(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=LoginSerializer,
        responses={
            200: inline_serializer(
                "LoginResult",
                {
                    "token": serializers.CharField(),
                    "expiresAt": serializers.DateTimeField(),
                    "user": serializers.DictField(),
                },
            )
        },
    )
    def post(self, request):
        data = LoginSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username, password = data.validated_data["username"], data.validated_data["password"]
        keys = _failure_keys(request, username)
        if any((cache.get(k) or 0) >= MAX_FAILURES for k in keys):
            raise ApiError("Too many failed logins; wait 15 minutes and try again.", 429)
        user = authenticate(request, username=username, password=password)
        if user is None:
            for k in keys:
                cache.add(k, 0, FAILURE_WINDOW)
                cache.incr(k)
            raise ApiError("Wrong username or password.", 401)
        cache.delete_many(keys[:1])
        expires = timezone.now() + SESSION_TOKEN_LIFETIME
        _, raw = ApiToken.objects.issue(user, name="login session", expires_at=expires)
        return Response({"token": raw, "expiresAt": expires, "user": _user_json(user)})


class Logout(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        if isinstance(request.auth, ApiToken):
            request.auth.delete()
        return Response(status=204)


class Me(APIView):
    @extend_schema(
        responses={
            200: inline_serializer(
                "Me",
                {
                    "id": serializers.IntegerField(),
                    "username": serializers.CharField(),
                    "isStaff": serializers.BooleanField(),
                },
            )
        }
    )
    def get(self, request):
        return Response(_user_json(request.user))
