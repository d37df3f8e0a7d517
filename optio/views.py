"""Dashboard shell: login, the Tasks list, a task's page and the Settings index."""

from __future__ import annotations

from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from optio.models import Event, Repo, Task, TaskLog, TaskState


class LoginView(auth_views.LoginView):
    template_name = "optio/login.html"
    redirect_authenticated_user = True


@require_POST
def logout_view(request):
    logout(request)
    return redirect("login")


@login_required
def task_list(request):
    tasks = Task.objects.select_related("repo")
    state = request.GET.get("state", "")
    repo = request.GET.get("repo", "")
    q = request.GET.get("q", "").strip()
    if state in TaskState.values:
        tasks = tasks.filter(state=state)
    if repo.isdigit():
        tasks = tasks.filter(repo_id=int(repo))
    if q:
        tasks = tasks.filter(title__icontains=q)
    page = Paginator(tasks, 25).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "states": TaskState.values,
        "repos": Repo.objects.all(),
        "filters": {"state": state, "repo": repo, "q": q},
    }
    template = (
        "optio/_task_rows.html" if request.htmx and request.htmx.target == "task-rows" else "optio/task_list.html"
    )
    return render(request, template, context)


@login_required
def task_detail(request, pk):
    task = get_object_or_404(Task.objects.select_related("repo"), pk=pk)
    history = Event.objects.filter(task=task).order_by("seq")
    logs = list(TaskLog.objects.filter(task=task).order_by("-seq")[:1000])[::-1]
    return render(request, "optio/task_detail.html", {"task": task, "history": history, "logs": logs})


@login_required
def settings_index(request):
    return render(request, "optio/settings.html", {"repos": Repo.objects.all()})
