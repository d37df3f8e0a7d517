"""Settings → Ticket providers: the list with status and actions, and the add/edit form.

Every action is a plain POST that also works without JavaScript (it redirects back); with
htmx it answers with just the fragment that changed (a row, or a preview table).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from tickets import services, sync, tasks
from tickets.forms import add_config_error, build_form, config_from
from tickets.models import TicketProvider
from tickets.providers import REGISTRY, get_source
from tickets.providers.base import ConfigError, SourceError


def _rows(providers) -> list[dict]:
    return [_row(p) for p in providers]


def _row(provider: TicketProvider, note: str = "") -> dict:
    source = get_source(provider.source)
    return {"p": provider, "label": source.label, "scope": source.describe(provider.config), "note": note}


@login_required
def providers_page(request):
    source_name = request.POST.get("source") or request.GET.get("source") or "github"
    if source_name not in REGISTRY:
        source_name = "github"
    source = get_source(source_name)
    form = build_form(source, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        config = {k: v for k, v in config_from(form).items() if v is not None}
        try:
            saved = services.create_provider(source.name, config, enabled=form.cleaned_data["enabled"])
        except ConfigError as exc:
            add_config_error(form, exc)
        else:
            text = f"Added a {source.label} provider."
            if saved.connected:
                text += " Connected " + ", ".join(saved.connected) + "."
            messages.success(request, text)
            return redirect("ticket-providers")
    context = {"rows": _rows(TicketProvider.objects.all()), "form": form, "source": source, "sources": REGISTRY}
    if request.htmx and request.htmx.target == "provider-form":
        return render(request, "tickets/_provider_form.html", context)
    return render(request, "tickets/providers.html", context)


@login_required
def provider_page(request, pk):
    provider = get_object_or_404(TicketProvider, pk=pk)
    source = get_source(provider.source)
    form = build_form(source, request.POST if request.method == "POST" else None, provider)
    if request.method == "POST" and form.is_valid():
        try:
            services.update_provider(provider, config=config_from(form), enabled=form.cleaned_data["enabled"])
        except ConfigError as exc:
            add_config_error(form, exc)
        else:
            messages.success(request, f"Saved the {source.label} provider.")
            return redirect("ticket-providers")
    return render(request, "tickets/provider_edit.html", {"provider": provider, "form": form, "source": source})


def _answer_row(request, provider: TicketProvider, note: str):
    if request.htmx:
        return render(request, "tickets/_provider_row.html", {"row": _row(provider, note)})
    messages.info(request, note)
    return redirect("ticket-providers")


@login_required
@require_POST
def provider_toggle(request, pk):
    provider = get_object_or_404(TicketProvider, pk=pk)
    saved = services.update_provider(provider, enabled=not provider.enabled)
    note = "Enabled; failures cleared." if saved.provider.enabled else "Disabled."
    return _answer_row(request, saved.provider, note)


@login_required
@require_POST
def provider_sync(request, pk):
    provider = get_object_or_404(TicketProvider, pk=pk)
    if not provider.enabled:
        return _answer_row(request, provider, "Enable the provider before syncing it.")
    tasks.enqueue(provider.pk)
    provider.refresh_from_db()
    return _answer_row(request, provider, "Sync queued.")


@login_required
@require_POST
def provider_preview(request, pk):
    provider = get_object_or_404(TicketProvider, pk=pk)
    context = {"provider": provider, "result": None, "error": ""}
    try:
        context["result"] = sync.preview(provider)
    except SourceError as exc:
        context["error"] = str(exc)
    context["would_create"] = (
        sum(1 for t in context["result"].tickets if t["action"] == "create") if context["result"] else 0
    )
    template = "tickets/_preview.html" if request.htmx else "tickets/preview.html"
    return render(request, template, context)


@login_required
@require_POST
def provider_delete(request, pk):
    provider = get_object_or_404(TicketProvider, pk=pk)
    services.delete_provider(provider)
    messages.success(request, "Deleted the provider; the tasks it created stay.")
    return redirect("ticket-providers")
