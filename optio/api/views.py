"""Core REST API: repositories, secrets, tasks and their logs, health."""

from __future__ import annotations

from django.db import IntegrityError, connection
from django.db.models import ProtectedError
from django.shortcuts import get_object_or_404
from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import generics, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from optio import lifecycle, logs
from optio import secrets as secret_service
from optio.api import serializers as s
from optio.api.errors import ApiError
from optio.auth import BearerTokenAuthentication
from optio.models import Repo, Secret, Task, TaskLog, TaskState


class RepoList(generics.ListCreateAPIView):
    queryset = Repo.objects.all()
    serializer_class = s.RepoSerializer

    def perform_create(self, serializer):
        url = serializer.validated_data["url"]
        if Repo.objects.filter(url=url).exists():
            raise ApiError(f"{url} is already connected.", status.HTTP_409_CONFLICT, {"repoUrl": url})
        try:
            serializer.save()
        except IntegrityError:  # a concurrent connect of the same URL won
            raise ApiError(f"{url} is already connected.", status.HTTP_409_CONFLICT, {"repoUrl": url}) from None


class RepoDetail(generics.RetrieveUpdateDestroyAPIView):
    queryset = Repo.objects.all()
    serializer_class = s.RepoUpdateSerializer

    def perform_destroy(self, instance):
        try:
            instance.delete()
        except ProtectedError:
            raise ApiError(
                f"{instance.url} still has tasks; tasks keep their history, so a repository with tasks cannot be disconnected.",
                status.HTTP_409_CONFLICT,
            ) from None


class SecretList(generics.ListAPIView):
    queryset = Secret.objects.select_related("repo")
    serializer_class = s.SecretSerializer

    @extend_schema(request=s.SecretWriteSerializer, responses={200: s.SecretSerializer, 201: s.SecretSerializer})
    def post(self, request):
        data = s.SecretWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        repo = None
        if data.validated_data.get("repoUrl"):
            repo = s.connected_repo_or_400(data.validated_data["repoUrl"])
        try:
            secret, created = secret_service.set_secret(data.validated_data["name"], data.validated_data["value"], repo)
        except secret_service.InvalidSecretName as exc:
            raise ApiError(str(exc), details={"name": [str(exc)]}) from None
        return Response(s.SecretSerializer(secret).data, status=201 if created else 200)


class SecretDetail(generics.RetrieveDestroyAPIView):
    queryset = Secret.objects.select_related("repo")
    serializer_class = s.SecretSerializer


class TaskList(generics.ListAPIView):
    serializer_class = s.TaskSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("state", str, enum=TaskState.values),
            OpenApiParameter("repo", str, description="A repository id or URL"),
            OpenApiParameter("ticketSource", str),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = Task.objects.select_related("repo")
        params = self.request.query_params
        if state := params.get("state"):
            if state not in TaskState.values:
                raise ApiError(f'"{state}" is not a task state; use one of: {", ".join(TaskState.values)}.')
            qs = qs.filter(state=state)
        if repo := params.get("repo"):
            qs = qs.filter(repo=_repo_param(repo))
        if source := params.get("ticketSource"):
            qs = qs.filter(ticket_source=source)
        return qs

    @extend_schema(request=s.TaskCreateSerializer, responses={201: s.TaskSerializer})
    def post(self, request):
        data = s.TaskCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task = lifecycle.create_task(
            data.validated_data["repoUrl"],
            data.validated_data["title"],
            data.validated_data["prompt"],
            created_by=request.user,
        )
        return Response(s.TaskSerializer(task).data, status=201)


def _repo_param(value: str) -> Repo:
    if value.isdigit():
        repo = Repo.objects.filter(pk=int(value)).first()
    else:
        try:
            repo = Repo.objects.filter_url(value).first()
        except ValueError as exc:
            raise ApiError(str(exc), details={"repo": [str(exc)]}) from None
    if repo is None:
        raise ApiError(f"No connected repository matches {value!r}.", details={"repo": ["not connected"]})
    return repo


class TaskDetail(generics.RetrieveAPIView):
    queryset = Task.objects.select_related("repo")
    serializer_class = s.TaskSerializer


class _TaskAction(APIView):
    def task(self, pk) -> Task:
        return get_object_or_404(Task.objects.select_related("repo"), pk=pk)


class TaskCancel(_TaskAction):
    @extend_schema(request=None, responses={200: s.TaskSerializer})
    def post(self, request, pk):
        return Response(s.TaskSerializer(lifecycle.cancel(self.task(pk))).data)


class TaskRetry(_TaskAction):
    @extend_schema(request=None, responses={200: s.TaskSerializer})
    def post(self, request, pk):
        task = self.task(pk)
        try:
            task = lifecycle.retry(task)
        except IntegrityError:
            raise ApiError(
                "Another task for the same ticket is already active; finish or cancel it before retrying this one.",
                status.HTTP_409_CONFLICT,
            ) from None
        return Response(s.TaskSerializer(task).data)


class TaskTransition(_TaskAction):
    """For agent runners: report a new state with the PR link, cost or error."""

    @extend_schema(request=s.TransitionSerializer, responses={200: s.TaskSerializer})
    def post(self, request, pk):
        data = s.TransitionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        changes = {}
        if "prUrl" in v:
            changes["pr_url"] = v["prUrl"]
        if "costUsd" in v:
            changes["cost_usd"] = v["costUsd"]
        if "error" in v:
            changes["error"] = v["error"]
        if "reason" in v:
            changes["attention_reason"] = v["reason"]
        task = self.task(pk)
        try:
            task = lifecycle.transition(task, v["state"], **changes)
        except IntegrityError:
            raise ApiError("Another task for the same ticket is already active.", status.HTTP_409_CONFLICT) from None
        return Response(s.TaskSerializer(task).data)


class TaskLogs(_TaskAction, generics.GenericAPIView):
    serializer_class = s.TaskLogSerializer

    @extend_schema(
        parameters=[OpenApiParameter("after", int, description="Only lines with a greater seq")],
        responses={200: s.TaskLogSerializer(many=True)},
    )
    def get(self, request, pk):
        task = self.task(pk)
        qs = TaskLog.objects.filter(task=task).order_by("seq")
        after = request.query_params.get("after")
        if after is not None:
            if not after.isdigit():
                raise ApiError("after must be a whole number (a log seq).", details={"after": ["not a number"]})
            qs = qs.filter(seq__gt=int(after))
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(s.TaskLogSerializer(page, many=True).data)

    @extend_schema(
        request={
            "application/json": {"type": "array", "items": {"type": "object"}},
            "application/x-ndjson": str,
            "text/plain": str,
        },
        responses={
            201: inline_serializer(
                "LogsAppended", {"appended": serializers.IntegerField(), "lastSeq": serializers.IntegerField()}
            )
        },
    )
    def post(self, request, pk):
        task = self.task(pk)
        try:
            lines = logs.parse_body(request.body, request.content_type or "")
        except logs.InvalidLogLine as exc:
            raise ApiError(str(exc), details={"line": exc.index + 1}) from None
        if len(lines) > logs.MAX_LINES_PER_REQUEST:
            raise ApiError(
                f"At most {logs.MAX_LINES_PER_REQUEST} lines per request; split the batch.",
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        rows = logs.append(task, lines)
        return Response({"appended": len(rows), "lastSeq": rows[-1].seq if rows else task.log_seq}, status=201)


_HealthSerializer = inline_serializer(
    "Health",
    {
        "status": serializers.ChoiceField(choices=["ok", "degraded"]),
        "mode": serializers.ChoiceField(choices=["embedded", "production"]),
        "database": serializers.CharField(help_text='"ok" or "error: <kind>"'),
        "broker": serializers.CharField(help_text='"ok" or "error: <kind>"'),
    },
)


class Health(APIView):
    """Liveness for load balancers: 200 when the database and the Celery broker answer, else 503."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: _HealthSerializer, 503: _HealthSerializer})
    def get(self, request):
        from django.conf import settings

        db = _check(_ping_database)
        # Embedded mode's broker is in this process: up whenever this process answers.
        broker = "ok" if settings.EMBEDDED else _check(_ping_broker)
        ok = db == "ok" and broker == "ok"
        body = {
            "status": "ok" if ok else "degraded",
            "mode": "embedded" if settings.EMBEDDED else "production",
            "database": db,
            "broker": broker,
        }
        return Response(body, status=200 if ok else 503)


def _ping_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _ping_broker() -> None:
    from optio.celery import app

    # A fresh connection each time, closed again: a probe must not leak sockets.
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=0, timeout=2)


def _check(fn) -> str:
    try:
        fn()
        return "ok"
    except Exception as exc:  # report, don't raise: health must answer
        return f"error: {exc.__class__.__name__}"


class _JsonErrors:
    """Errors as JSON even on views whose success renderer is YAML or HTML (schema, docs)."""

    def handle_exception(self, exc):
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)


class Schema(_JsonErrors, SpectacularAPIView):
    """The OpenAPI schema, JSON by default (`?format=yaml` for YAML); token or dashboard session."""

    authentication_classes = [BearerTokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
    renderer_classes = [OpenApiJsonRenderer, OpenApiJsonRenderer2, OpenApiYamlRenderer, OpenApiYamlRenderer2]


class Docs(_JsonErrors, SpectacularSwaggerView):
    """Swagger UI over the schema; token or dashboard session."""

    authentication_classes = [BearerTokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
