"""REST API: MCP server definitions, and the resolved configuration a task's agent loads."""

from __future__ import annotations

import logging

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.mcp import resolution, services
from integrations.mcp.models import MCPServer, Transport
from integrations.mcp.validation import InvalidServer
from optio.api.errors import ApiError
from optio.models import Repo, Task
from optio.repo_urls import InvalidRepoUrl, normalize_repo_url

log = logging.getLogger(__name__)


class MCPServerSerializer(serializers.ModelSerializer):
    """The stored definition: `{{SECRET}}` references as written, never secret values."""

    scope = serializers.CharField(read_only=True)
    repoUrl = serializers.SerializerMethodField()
    command = serializers.SerializerMethodField()
    args = serializers.SerializerMethodField()
    env = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    headers = serializers.SerializerMethodField()
    secretRefs = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)

    class Meta:
        model = MCPServer
        fields = [
            "id", "name", "scope", "repoUrl", "transport", "command", "args", "env", "url", "headers",
            "enabled", "secretRefs", "createdAt", "updatedAt",
        ]  # fmt: skip
        read_only_fields = fields

    def _stdio(self, obj) -> bool:
        return obj.transport == Transport.STDIO

    def get_repoUrl(self, obj) -> str | None:
        return obj.repo.url if obj.repo_id else None

    def get_command(self, obj) -> str | None:
        return obj.command if self._stdio(obj) else None

    def get_args(self, obj) -> list[str] | None:
        return obj.args if self._stdio(obj) else None

    def get_env(self, obj) -> dict[str, str] | None:
        return obj.env if self._stdio(obj) else None

    def get_url(self, obj) -> str | None:
        return None if self._stdio(obj) else obj.url

    def get_headers(self, obj) -> dict[str, str] | None:
        return None if self._stdio(obj) else obj.headers

    def get_secretRefs(self, obj) -> list[str]:
        from integrations.mcp.templating import references_in

        return references_in(obj.templated_values())


class MCPServerSavedSerializer(MCPServerSerializer):
    """The save response: the definition plus what would stop it resolving today."""

    warnings = serializers.ListField(child=serializers.CharField(), read_only=True)
    missingSecrets = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta(MCPServerSerializer.Meta):
        fields = [*MCPServerSerializer.Meta.fields, "warnings", "missingSecrets"]


class MCPServerWriteSerializer(serializers.Serializer):
    """Documentation of the request body; integrations/mcp/validation.py does the checking."""

    name = serializers.CharField(help_text='1–64 letters, digits, spaces, ".", "_" or "-"; the key in .mcp.json')
    repoUrl = serializers.CharField(required=False, allow_null=True, help_text="A connected repository; null = global")
    transport = serializers.ChoiceField(
        choices=Transport.choices, required=False, help_text="Inferred: command means stdio, url means http"
    )
    command = serializers.CharField(required=False, help_text="stdio: the program the agent starts")
    args = serializers.ListField(child=serializers.CharField(), required=False, help_text="stdio; {{SECRET}} allowed")
    env = serializers.DictField(child=serializers.CharField(), required=False, help_text="stdio; {{SECRET}} allowed")
    url = serializers.CharField(required=False, help_text="http: the server's URL; {{SECRET}} allowed")
    headers = serializers.DictField(child=serializers.CharField(), required=False, help_text="http; {{SECRET}} allowed")
    enabled = serializers.BooleanField(required=False, default=True)


MCPConfigSerializer = inline_serializer(
    "MCPConfig", {"mcpServers": serializers.DictField(child=serializers.DictField())}
)


def _invalid(exc: InvalidServer) -> ApiError:
    return ApiError(str(exc), status.HTTP_400_BAD_REQUEST, exc.errors)


def _saved(server: MCPServer, warnings: list[str], missing: list[str], code: int) -> Response:
    server.warnings, server.missingSecrets = warnings, missing
    return Response(MCPServerSavedSerializer(server).data, status=code)


def _write(fn, *args) -> tuple:
    try:
        return fn(*args)
    except InvalidServer as exc:
        raise _invalid(exc) from None
    except services.NameTaken as exc:
        details = {"name": [str(exc)], "existingId": exc.existing_id}
        raise ApiError(str(exc), status.HTTP_409_CONFLICT, details) from None


class MCPServerList(generics.ListAPIView):
    serializer_class = MCPServerSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("repoUrl", str, description="Only this repository's servers"),
            OpenApiParameter(
                "scope", str, enum=["global", "repository"], description="Only global or only repository servers"
            ),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = MCPServer.objects.select_related("repo")
        params = self.request.query_params
        scope, repo_url = params.get("scope"), params.get("repoUrl")
        if scope not in (None, "global", "repository"):
            raise ApiError(f'scope must be "global" or "repository"; got {scope!r}.', details={"scope": ["invalid"]})
        if scope == "global" and repo_url:
            raise ApiError("Use scope=global or repoUrl, not both: global servers have no repository.")
        if scope == "global":
            qs = qs.filter(repo__isnull=True)
        elif scope == "repository":
            qs = qs.filter(repo__isnull=False)
        if repo_url:
            try:
                url = normalize_repo_url(repo_url)
            except InvalidRepoUrl as exc:
                raise ApiError(str(exc), details={"repoUrl": [str(exc)]}) from None
            repo = Repo.objects.filter(url=url).first()
            if repo is None:
                raise ApiError(f"{url} is not a connected repository.", details={"repoUrl": ["not connected"]})
            qs = qs.filter(repo=repo)
        return qs

    @extend_schema(request=MCPServerWriteSerializer, responses={201: MCPServerSavedSerializer})
    def post(self, request):
        server, warnings, missing = _write(services.create_server, request.data)
        return _saved(server, warnings, missing, status.HTTP_201_CREATED)


class MCPServerDetail(APIView):
    def server(self, pk) -> MCPServer:
        server = MCPServer.objects.select_related("repo").filter(pk=pk).first()
        if server is None:
            raise ApiError(f"No MCP server has id {pk}; GET /api/mcp-servers lists them.", status.HTTP_404_NOT_FOUND)
        return server

    @extend_schema(responses={200: MCPServerSerializer})
    def get(self, request, pk):
        return Response(MCPServerSerializer(self.server(pk)).data)

    @extend_schema(request=MCPServerWriteSerializer, responses={200: MCPServerSavedSerializer})
    def patch(self, request, pk):
        server, warnings, missing = _write(services.update_server, self.server(pk), request.data)
        return _saved(server, warnings, missing, status.HTTP_200_OK)

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        services.delete_server(self.server(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _config_response(repo: Repo, who: str) -> Response:
    try:
        config = resolution.resolve(repo)
    except resolution.UnresolvedConfig as exc:
        raise ApiError(
            str(exc), status.HTTP_409_CONFLICT, {"missingSecrets": exc.missing, "servers": exc.by_server}
        ) from None
    # Server names only: the document itself holds secret values.
    log.info("MCP configuration served to %s: %s", who, ", ".join(config["mcpServers"]) or "no servers")
    # It carries secret values: no cache may keep a copy.
    return Response(config, headers={"Cache-Control": "no-store"})


class TaskMCPConfig(APIView):
    """The `.mcp.json` a task's agent loads, with secrets filled in."""

    @extend_schema(responses={200: MCPConfigSerializer})
    def get(self, request, pk):
        task = Task.objects.select_related("repo").filter(pk=pk).first()
        if task is None:
            raise ApiError(f"No task has id {pk}.", status.HTTP_404_NOT_FOUND)
        return _config_response(task.repo, f"task {task.pk}")


class RepoMCPConfig(APIView):
    """The `.mcp.json` any task in this repository would get now."""

    @extend_schema(responses={200: MCPConfigSerializer})
    def get(self, request, pk):
        repo = Repo.objects.filter(pk=pk).first()
        if repo is None:
            raise ApiError(
                f"No connected repository has id {pk}; GET /api/repos lists them.", status.HTTP_404_NOT_FOUND
            )
        return _config_response(repo, f"repository {repo.url}")
