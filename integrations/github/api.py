"""GET /api/issues and POST /api/issues/assign."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.github import assign, client, issues
from optio.api.errors import ApiError
from optio.api.pagination import Pagination
from optio.api.serializers import RepoUrlField, TaskSerializer
from optio.models import Repo
from optio.repo_urls import InvalidRepoUrl


def github_error(exc: client.GitHubError) -> ApiError:
    """A GitHub failure as an API error: the sentence stays, the status says whose move it is."""
    details = {"kind": exc.kind}
    if isinstance(exc, client.MissingToken):
        return ApiError(str(exc), status.HTTP_400_BAD_REQUEST, {**details, "secret": client.TOKEN_SECRET})
    if isinstance(exc, client.RateLimited):
        return ApiError(str(exc), status.HTTP_503_SERVICE_UNAVAILABLE, {**details, "retryAfter": exc.retry_after})
    if isinstance(exc, client.NotFound):
        return ApiError(str(exc), status.HTTP_404_NOT_FOUND, details)
    return ApiError(str(exc), status.HTTP_502_BAD_GATEWAY, details)


def repo_param(value: str) -> Repo:
    """`repo` as a connected repository's id or URL."""
    if value.isdigit():
        repo = Repo.objects.filter(pk=int(value)).first()
    else:
        try:
            repo = Repo.objects.filter_url(value).first()
        except InvalidRepoUrl as exc:
            raise ApiError(str(exc), details={"repo": [str(exc)]}) from None
    if repo is None:
        raise ApiError(
            f"No connected repository matches {value!r}; use a repository id or URL from GET /api/repos.",
            details={"repo": ["not connected"]},
        )
    return repo


def filters_from(params) -> issues.Filters:
    state = params.get("state", "open") or "open"
    if state not in issues.STATES:
        raise ApiError(
            f'"{state}" is not an issue state; use one of: {", ".join(issues.STATES)}.', details={"state": [state]}
        )
    labels = [name.strip() for raw in params.getlist("labels") for name in raw.split(",") if name.strip()]
    return issues.Filters(
        state=state, labels=labels, assignee=params.get("assignee", "").strip(), q=params.get("q", "").strip()
    )


_repo_shape = inline_serializer("IssueRepo", {"id": serializers.IntegerField(), "fullName": serializers.CharField(), "repoUrl": serializers.CharField()})  # fmt: skip
_issue_shape = inline_serializer(
    "Issue",
    {
        "id": serializers.IntegerField(),
        "number": serializers.IntegerField(),
        "title": serializers.CharField(),
        "body": serializers.CharField(),
        "url": serializers.URLField(),
        "labels": serializers.ListField(child=serializers.CharField()),
        "state": serializers.CharField(),
        "author": serializers.CharField(allow_null=True),
        "assignee": serializers.CharField(allow_null=True),
        "assignees": serializers.ListField(child=serializers.CharField()),
        "comments": serializers.IntegerField(),
        "repo": _repo_shape,
        "createdAt": serializers.DateTimeField(),
        "updatedAt": serializers.DateTimeField(),
        "optioTask": inline_serializer(
            "IssueTask", {"taskId": serializers.UUIDField(), "state": serializers.CharField()}, allow_null=True
        ),
    },
)


class IssueList(APIView):
    pagination_class = Pagination

    @extend_schema(
        operation_id="issues_list",
        summary="Issues across every connected repository",
        parameters=[
            OpenApiParameter("repo", str, description="A connected repository's id or URL"),
            OpenApiParameter("state", str, enum=list(issues.STATES), description="Default: open"),
            OpenApiParameter("labels", str, description="Comma-separated; an issue must carry all of them"),
            OpenApiParameter("assignee", str, description="A login, `none` or `*`"),
            OpenApiParameter("q", str, description="Text in the title"),
            OpenApiParameter("page", int),
            OpenApiParameter("pageSize", int),
        ],
        responses={
            200: inline_serializer(
                "IssuePage",
                {
                    "count": serializers.IntegerField(),
                    "next": serializers.URLField(allow_null=True),
                    "previous": serializers.URLField(allow_null=True),
                    "results": _issue_shape.__class__(many=True),
                    "errors": serializers.ListField(
                        child=inline_serializer(
                            "IssueRepoError",
                            {"repo": _repo_shape, "reason": serializers.CharField(), "kind": serializers.CharField()},
                        )
                    ),
                },
            )
        },
    )
    def get(self, request):
        params = request.query_params
        filters = filters_from(params)
        repos = [repo_param(params["repo"])] if params.get("repo") else list(Repo.objects.all())
        feed = issues.fetch(repos, filters)
        if feed.missing_token:
            where = f" for {repos[0].full_name} or globally" if len(repos) == 1 else ""
            raise ApiError(
                f"No GITHUB_TOKEN secret is set{where}, so Optio cannot read GitHub issues. {client.WHERE_TO_SET_TOKEN}",
                status.HTTP_400_BAD_REQUEST,
                {"secret": client.TOKEN_SECRET, "kind": "missing_token"},
            )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(feed.items, request, view=self)
        response = paginator.get_paginated_response(issues.attach_tasks(page))
        response.data["errors"] = [error.as_json() for error in feed.errors]
        return response


class AssignSerializer(serializers.Serializer):
    issueUrl = serializers.CharField(required=False, max_length=500)
    repoUrl = RepoUrlField(required=False)
    repoId = serializers.IntegerField(required=False, min_value=1)
    issueNumber = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)


class IssueAssign(APIView):
    @extend_schema(
        summary="Turn a GitHub issue into a task (or return its active task)",
        description='Send {"issueUrl", "repoUrl"}, or {"repoId" or "repoUrl", "issueNumber"}. '
        "201 when a task was created, 200 when the issue already had an active task.",
        request=AssignSerializer,
        responses={201: TaskSerializer, 200: TaskSerializer},
    )
    def post(self, request):
        data = AssignSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        repo, number = self.target(data.validated_data)
        try:
            result = assign.assign(repo, number, user=request.user)
        except assign.AssignError as exc:
            raise ApiError(exc.message, exc.status, exc.details) from None
        except client.GitHubError as exc:
            raise github_error(exc) from None
        return Response(TaskSerializer(result.task).data, status=201 if result.created else 200)

    @staticmethod
    def target(values: dict) -> tuple[Repo, int]:
        repo = None
        if "repoId" in values:
            repo = Repo.objects.filter(pk=values["repoId"]).first()
            if repo is None:
                raise ApiError(f"No connected repository has id {values['repoId']}.", details={"repoId": ["unknown"]})
        if "repoUrl" in values:
            by_url = Repo.objects.filter(url=values["repoUrl"]).first()
            if by_url is None:
                raise ApiError(
                    f"{values['repoUrl']} is not a connected repository; connect it first with POST /api/repos "
                    "or in Settings → Repositories.",
                    details={"repoUrl": ["not connected"]},
                )
            if repo is not None and repo != by_url:
                raise ApiError("repoId and repoUrl name different repositories; send one of them.")
            repo = by_url
        number = values.get("issueNumber")
        if values.get("issueUrl"):
            try:
                ref = assign.parse_issue_url(values["issueUrl"])
            except assign.AssignError as exc:
                raise ApiError(exc.message, exc.status, exc.details) from None
            if repo is None:
                repo = Repo.objects.filter(url=ref.repo_url).first()
                if repo is None:
                    raise ApiError(
                        f"{ref.repo_url} is not a connected repository; connect it first with POST /api/repos.",
                        details={"issueUrl": ["repository not connected"]},
                    )
            elif ref.repo_url != repo.url:
                raise ApiError(
                    f"{values['issueUrl']} is an issue of {ref.repo_url.split('/', 3)[3]}, not of {repo.full_name}; "
                    "send the issue's own repository.",
                    details={"issueUrl": ["belongs to another repository"]},
                )
            if number is not None and number != ref.number:
                raise ApiError(f"issueNumber {number} does not match {values['issueUrl']}.")
            number = ref.number
        if number is None:
            raise ApiError(
                'Say which issue: send {"issueUrl": "https://github.com/owner/name/issues/42", "repoUrl": '
                '"https://github.com/owner/name"}, or repoId and issueNumber.',
                details={"issueUrl": ["required"]},
            )
        if repo is None:
            raise ApiError("Say which repository: send repoUrl or repoId with issueNumber.", details={"repoUrl": ["required"]})  # fmt: skip
        return repo, number
