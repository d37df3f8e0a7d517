"""Dashboard: Settings → Repositories (connect, disconnect) and one repository's settings.

Both pages are plain forms (they work without JavaScript); writes go through the same
serializers as the REST API, so the page and `PATCH /api/repos/<id>` validate alike.
The Slack "Send test" button posts to the Slack app's own route (`optio` imports no app).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError
from django.db.models import Count, ProtectedError
from django.shortcuts import get_object_or_404, redirect, render

from optio.api.errors import _first_message
from optio.api.serializers import RepoSerializer, RepoUpdateSerializer
from optio.models import SLACK_NOTIFY_CHOICES, Repo

EVENT_LABELS = {
    "completed": "Completed (PR merged)",
    "failed": "Failed",
    "needs_attention": "Needs attention (CI failed, changes requested)",
    "pr_opened": "Pull request opened",
}


@login_required
def repo_list(request):
    form_error, status = "", 200
    repo_url = ""
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "connect":
            repo_url = request.POST.get("repo_url", "").strip()
            form_error = _connect(request, repo_url)
            if not form_error:
                return redirect("repos")
            status = 400
        elif action == "disconnect":
            _disconnect(request, request.POST.get("repo", ""))
            return redirect("repos")
        else:
            form_error, status = "Unknown action; use the Connect or Disconnect buttons.", 400
    repos = Repo.objects.annotate(task_count=Count("tasks"))
    context = {"repos": repos, "form_error": form_error, "repo_url": repo_url}
    return render(request, "optio/repos.html", context, status=status)


def _connect(request, url: str) -> str:
    """Connect `url`; returns an error sentence, or "" after adding a success message."""
    data = RepoSerializer(data={"repoUrl": url})
    if not data.is_valid():
        return _first_message(data.errors)
    normalised = data.validated_data["url"]
    if Repo.objects.filter(url=normalised).exists():
        return f"{normalised} is already connected."
    try:
        repo = data.save()
    except IntegrityError:  # a concurrent connect of the same URL won
        return f"{normalised} is already connected."
    messages.success(request, f"Connected {repo.full_name}.")
    return ""


def _disconnect(request, pk: str) -> None:
    repo = Repo.objects.filter(pk=int(pk)).first() if pk.isdigit() else None
    if repo is None:
        messages.error(request, "That repository is not connected (any more).")
        return
    try:
        repo.delete()
    except ProtectedError:
        messages.error(
            request,
            f"{repo.full_name} still has tasks; tasks keep their history, so a repository with tasks cannot be disconnected.",
        )
        return
    messages.success(request, f"Disconnected {repo.full_name}.")


@login_required
def repo_settings(request, pk: int):
    repo = get_object_or_404(Repo, pk=pk)
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        section = request.POST.get("section")
        if section == "general":
            data = {
                "defaultBranch": request.POST.get("default_branch", "").strip(),
                "writebackEnabled": "writeback_enabled" in request.POST,
            }
        elif section == "slack":
            data = {
                "slackEnabled": "slack_enabled" in request.POST,
                "slackNotifyOn": request.POST.getlist("slack_notify_on"),
            }
            new_url = request.POST.get("slack_webhook_url", "").strip()
            if new_url:
                data["slackWebhookUrl"] = new_url
            elif "slack_remove_url" in request.POST:
                data["slackWebhookUrl"] = ""
        else:
            data = None
            errors["form"] = "Unknown form section; use the Save buttons on this page."
        if data is not None:
            serializer = RepoUpdateSerializer(repo, data=data, partial=True)
            if serializer.is_valid():
                serializer.save()
                messages.success(request, "Slack settings saved." if section == "slack" else "Settings saved.")
                return redirect("repo-settings", pk=repo.pk)
            errors = {field: _first_message(problems) for field, problems in serializer.errors.items()}
            repo.refresh_from_db()
        status = 400
    # After a rejected Slack form, show what was submitted rather than what is stored.
    resubmit = request.method == "POST" and request.POST.get("section") == "slack"
    notify_on = request.POST.getlist("slack_notify_on") if resubmit else (repo.slack_notify_on or [])
    context = {
        "repo": repo,
        "errors": errors,
        "masked_url": RepoUpdateSerializer(repo).data["slackWebhookUrl"],
        "slack_enabled": ("slack_enabled" in request.POST) if resubmit else repo.slack_enabled,
        "events": [(e, EVENT_LABELS[e], e in notify_on) for e in SLACK_NOTIFY_CHOICES],
    }
    return render(request, "optio/repo_settings.html", context, status=status)
