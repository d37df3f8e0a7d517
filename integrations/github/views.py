"""The Issues page (/issues/): open issues of every connected repository, assigned with one click."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from integrations.github import assign, client, issues
from optio.models import ACTIVE_STATES, Repo

PAGE_SIZE = 25


def _filters(data) -> tuple[dict, issues.Filters]:
    raw = {name: data.get(name, "").strip() for name in ("repo", "label", "assignee", "q")}
    if not raw["repo"].isdigit():
        raw["repo"] = ""
    return raw, issues.Filters(labels=[raw["label"]] if raw["label"] else [], assignee=raw["assignee"], q=raw["q"])


def _repos(raw: dict) -> list[Repo]:
    repos = Repo.objects.all()
    return list(repos.filter(pk=int(raw["repo"])) if raw["repo"] else repos)


def _mark_active(items: list[dict]) -> list[dict]:
    for item in items:
        item["taskActive"] = bool(item.get("optioTask") and item["optioTask"]["state"] in ACTIVE_STATES)
    return items


@login_required
@require_GET
def issue_list(request):
    raw, filters = _filters(request.GET)
    all_repos = list(Repo.objects.all())
    feed = issues.fetch(_repos(raw), filters) if all_repos else None
    page = Paginator(feed.items if feed else [], PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "rows": _mark_active(issues.attach_tasks(list(page.object_list))),
        "repos": all_repos,
        "feed": feed,
        "page": page,
        "filters": raw,
        "filtered": any(raw.values()),
        "query": urlencode({k: v for k, v in raw.items() if v}),
        "token_help": client.WHERE_TO_SET_TOKEN,
    }
    partial = request.htmx and request.htmx.target == "issue-results"
    return render(request, "issues/_results.html" if partial else "issues/issue_list.html", context)


def _back(request):
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = "/issues/"
    return redirect(target)


@login_required
@require_POST
def assign_issue(request):
    """Assign one issue; over htmx the answer is the row's Optio cell, otherwise a redirect back."""
    repo_id, number = request.POST.get("repo", ""), request.POST.get("number", "")
    repo = Repo.objects.filter(pk=int(repo_id)).first() if repo_id.isdigit() else None
    item = {"repo": {"id": repo_id}, "number": number, "optioTask": None, "taskActive": False}
    error = None
    if repo is None or not number.isdigit():
        error = "This repository is no longer connected." if number.isdigit() else "No issue number was sent."
    else:
        try:
            result = assign.assign(repo, int(number), user=request.user)
        except (assign.AssignError, client.GitHubError) as exc:
            error = str(exc)
        else:
            item = issues.summary(repo, result.issue)
            item["optioTask"] = {"taskId": str(result.task.pk), "state": result.task.state}
            item["taskActive"] = True
            item["justAssigned"] = result.created
    if request.htmx:
        # 200 even for a refusal: htmx swaps only 2xx answers, and the cell shows the reason.
        return render(request, "issues/_issue_action.html", {"item": item, "error": error})
    if error:
        messages.error(request, error)
    else:
        verb = "is now task" if item["justAssigned"] else "already has task"
        messages.success(request, f"{repo.full_name}#{number} {verb} “{item['title']}”.")
    return _back(request)


@login_required
@require_POST
def assign_all(request):
    """Assign every issue in the filtered set that has no active task (up to MAX_ASSIGN_ALL per click)."""
    raw, filters = _filters(request.POST)
    feed = issues.fetch(_repos(raw), filters)
    result = assign.assign_many(issues.attach_tasks(feed.items), user=request.user)
    parts = [f"Assigned {len(result.created)} issue{'s' if len(result.created) != 1 else ''}"]
    if result.existing:
        parts.append(f"{len(result.existing)} already had a task")
    if result.remaining:
        parts.append(f"{result.remaining} more are left for another click")
    messages.success(request, "; ".join(parts) + ".")
    for item, reason in result.failed[:5]:
        messages.error(request, f"{item['repo']['fullName']}#{item['number']}: {reason}")
    if len(result.failed) > 5:
        messages.error(request, f"…and {len(result.failed) - 5} more could not be assigned.")
    return _back(request)
