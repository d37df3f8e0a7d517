"""POST /api/slack/test: send the sample message now and say what Slack answered."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import http
from integrations.slack import client, services
from optio.models import Repo


class SlackTestSerializer(serializers.Serializer):
    webhookUrl = serializers.CharField(
        required=False, max_length=2000, help_text="Omit to use the repository's stored URL"
    )
    repoId = serializers.IntegerField(required=False, help_text="Repository whose stored URL (and name) to use")


SlackTestResponse = inline_serializer(
    "SlackTestResult",
    {"ok": serializers.BooleanField(), "error": serializers.CharField(required=False),
     "details": serializers.DictField(required=False)},
)  # fmt: skip
# A body DRF cannot parse is answered by the API-wide error handler, without "ok".
SlackTestFailure = inline_serializer(
    "SlackTestFailure",
    {"ok": serializers.BooleanField(required=False), "error": serializers.CharField(),
     "details": serializers.DictField(required=False)},
)  # fmt: skip


def _fail(message: str, status: int, details: dict | None = None) -> Response:
    return Response({"ok": False, "error": message, "details": details or {}}, status=status)


def resolve_target(webhook_url: str | None, repo: Repo | None) -> str:
    """The URL to test: the one given, or the repository's stored one. Raises ValueError with a sentence."""
    url = (webhook_url or "").strip()
    if not url and repo is not None:
        url = services.stored_url(repo)
        if not url:
            raise ValueError(f"{repo.full_name} has no Slack webhook URL yet; paste one first.")
    if not url:
        raise ValueError("Send webhookUrl (a Slack incoming-webhook URL) or repoId of a repository that has one.")
    try:
        http.check_url(url)
    except http.OutboundError as exc:
        raise ValueError(client.redact(exc.reason, url)) from None
    return url


class SlackTest(APIView):
    @extend_schema(
        request=SlackTestSerializer, responses={200: SlackTestResponse, 400: SlackTestFailure, 502: SlackTestResponse}
    )
    def post(self, request):
        data = SlackTestSerializer(data=request.data)
        if not data.is_valid():
            field, problems = next(iter(data.errors.items()))
            return _fail(f"Invalid input. {field}: {problems[0]}", 400, data.errors)
        repo = None
        if "repoId" in data.validated_data:
            repo = Repo.objects.filter(pk=data.validated_data["repoId"]).first()
            if repo is None:
                return _fail(
                    f"No connected repository has id {data.validated_data['repoId']}.", 400, {"repoId": ["not found"]}
                )
        try:
            url = resolve_target(data.validated_data.get("webhookUrl"), repo)
        except ValueError as exc:
            return _fail(str(exc), 400, {"webhookUrl": [str(exc)]})
        result = services.send_test(url, repo)
        if result.ok:
            return Response({"ok": True})
        return _fail(result.error, 502, {"slackError": result.code, "status": result.status})
