"""Dashboard: the "Send test" button of a repository's settings page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from integrations.slack import services
from integrations.slack.api import resolve_target
from optio.models import Repo


@login_required
@require_POST
def send_test(request, pk: int):
    """htmx: answer with the inline result; without JS: back to the page with a message."""
    repo = get_object_or_404(Repo, pk=pk)
    try:
        url = resolve_target(request.POST.get("slack_webhook_url"), repo)
    except ValueError as exc:
        ok, text = False, str(exc)
    else:
        result = services.send_test(url, repo)
        ok, text = result.ok, ("Sent. Check the channel for the test message." if result.ok else result.error)
    if request.htmx:
        return render(request, "slack/_test_result.html", {"ok": ok, "text": text})
    (messages.success if ok else messages.error)(request, f"Slack test: {text}")
    return redirect("repo-settings", pk=repo.pk)
