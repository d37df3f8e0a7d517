"""Dashboard shell: login, the Tasks list, a task's page and the Settings index."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import connection
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from optio.auth import clear_login_failures, login_blocked, record_login_failure
from optio.models import Event, Repo, Task, TaskLog, TaskState


class LoginView(auth_views.LoginView):
    """Django's sign-in form, throttled like the API login (optio.auth)."""

    template_name = "optio/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        blocked = login_blocked(request, username)
        if blocked:
            form = self.get_form_class()(request)  # unbound: never check the password while blocked
            return self.render_to_response(self.get_context_data(form=form, blocked=blocked), status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        record_login_failure(self.request, self.request.POST.get("username", ""))
        return super().form_invalid(form)

    def form_valid(self, form):
        clear_login_failures(self.request, form.get_user().get_username())
        return super().form_valid(form)


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
    system = {
        "embedded": settings.EMBEDDED,
        "database": {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(connection.vendor, connection.vendor),
        "public_url": settings.OPTIO_PUBLIC_URL,
    }
    return render(request, "optio/settings.html", {"repos": Repo.objects.all(), "system": system})
