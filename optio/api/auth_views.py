"""Login for API clients: exchange a username and password for a session token."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import authenticate
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from optio.api.errors import ApiError
from optio.auth import clear_login_failures, login_blocked, record_login_failure
from optio.models import ApiToken

SESSION_TOKEN_LIFETIME = timedelta(days=30)


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1024, trim_whitespace=False)


def _user_json(user) -> dict:
    return {"id": user.pk, "username": user.username, "isStaff": user.is_staff}


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
        blocked = login_blocked(request, username)
        if blocked:
            raise ApiError(blocked, 429)
        user = authenticate(request, username=username, password=password)
        if user is None:
            record_login_failure(request, username)
            raise ApiError("Wrong username or password.", 401)
        clear_login_failures(request, username)
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
