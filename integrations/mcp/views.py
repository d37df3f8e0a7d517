"""Settings → MCP servers: global and per-repository lists, the add/edit form, effective configuration."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from integrations.mcp import forms, resolution, services
from integrations.mcp.models import MCPServer
from integrations.mcp.templating import references_in
from integrations.mcp.validation import InvalidServer
from optio.models import Repo


def _rows(servers) -> list[dict]:
    return [{"server": s, "refs": references_in(s.templated_values())} for s in servers]


@login_required
def mcp_settings(request):
    servers = list(MCPServer.objects.select_related("repo"))
    repos = [
        {"repo": repo, "servers": _rows(s for s in servers if s.repo_id == repo.pk)} for repo in Repo.objects.all()
    ]
    context = {"global_servers": _rows(s for s in servers if s.is_global), "repos": repos}
    return render(request, "mcp/settings.html", context)


@login_required
def server_form(request, pk: int | None = None):
    server = get_object_or_404(MCPServer.objects.select_related("repo"), pk=pk) if pk else None
    preset = Repo.objects.filter(pk=request.GET["repo"]).first() if request.GET.get("repo", "").isdigit() else None
    text, errors = forms.initial(server, preset), {}
    if request.method == "POST":
        text = forms.submitted(request.POST)
        try:
            data = forms.to_data(text)
            if server is None:
                saved, warnings, _ = services.create_server(data)
            else:
                saved, warnings, _ = services.update_server(server, data)
        except forms.FormError as exc:
            errors = {exc.field: [str(exc)]}
        except InvalidServer as exc:
            errors = exc.errors
        except services.NameTaken as exc:
            errors = {"name": [str(exc)]}
        else:
            messages.success(request, f'Saved MCP server "{saved.name}" ({saved.scope}).')
            for warning in warnings:
                messages.warning(request, warning)
            return redirect("mcp-settings")
    context = {"server": server, "form": text, "errors": errors, "repos": Repo.objects.all()}
    return render(request, "mcp/server_form.html", context, status=400 if errors else 200)


@login_required
@require_POST
def server_delete(request, pk: int):
    server = get_object_or_404(MCPServer.objects.select_related("repo"), pk=pk)
    label = f'"{server.name}" ({server.scope})'
    services.delete_server(server)
    if request.htmx:
        return HttpResponse("")  # the row swaps itself out
    messages.success(request, f"Deleted MCP server {label}.")
    return redirect("mcp-settings")


@login_required
def repo_effective(request, pk: int):
    repo = get_object_or_404(Repo, pk=pk)
    rows = resolution.effective(repo)
    applied = [c for c in rows if c.status == resolution.APPLIES]
    missing = sorted({n for c in applied for n in c.missing})
    context = {"repo": repo, "rows": rows, "applied": applied, "missing": missing}
    template = "mcp/_effective.html" if request.htmx else "mcp/effective.html"
    return render(request, template, context)
