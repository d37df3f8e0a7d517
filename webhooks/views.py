"""Settings → Webhooks: list with health, create/edit, test, deliveries, a delivery's attempts, redeliver."""

from __future__ import annotations

import json
from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Max, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST
from kombu.exceptions import OperationalError

from optio import events
from webhooks import endpoints
from webhooks.models import Delivery, DeliveryStatus, Webhook

EVENT_CHOICES = [
    ("*", "Everything (*)"),
    ("task.*", "Every task event (task.*)"),
    *[(name, name) for name in events.TASK_EVENTS],
]


class WebhookForm(forms.Form):
    url = forms.CharField(label="Payload URL", max_length=2000)
    description = forms.CharField(max_length=500, required=False)
    events = forms.MultipleChoiceField(choices=EVENT_CHOICES, widget=forms.CheckboxSelectMultiple)
    secret = forms.CharField(
        max_length=512, required=False, strip=False, widget=forms.PasswordInput(render_value=False)
    )
    active = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, creating: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.creating = creating
        self.fields["secret"].required = creating
        self.fields["secret"].help_text = (
            "Shared with the receiver to verify signatures. Use Generate for a Standard Webhooks whsec_ secret."
            if creating
            else "Leave empty to keep the current secret. A new one starts a 24-hour rotation in which both sign."
        )

    def clean(self):
        data = super().clean()
        checks = [("url", endpoints.clean_url), ("events", endpoints.clean_events)]
        if data.get("secret"):
            checks.append(("secret", endpoints.clean_secret))
        for field, check in checks:
            if field in data:
                try:
                    data[field] = check(data[field])
                except endpoints.InvalidWebhook as exc:
                    self.add_error(field, exc.message)
        return data


def _health_rows(hooks):
    since = timezone.now() - timedelta(hours=24)
    stats = {
        row["webhook_id"]: row
        for row in Delivery.objects.filter(webhook__in=hooks, created_at__gte=since)
        .values("webhook_id")
        .annotate(
            ok=Count("pk", filter=Q(status=DeliveryStatus.SUCCESS)),
            failed=Count("pk", filter=Q(status=DeliveryStatus.FAILED)),
            waiting=Count("pk", filter=Q(status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING])),
            last=Max("created_at"),
        )
    }
    return [(hook, stats.get(hook.pk, {})) for hook in hooks]


@login_required
def webhook_list(request):
    hooks = list(Webhook.objects.all())
    return render(request, "webhooks/list.html", {"rows": _health_rows(hooks)})


@login_required
def webhook_new(request):
    form = WebhookForm(request.POST or None, creating=True)
    if request.method == "POST" and form.is_valid():
        webhook = endpoints.create(**form.cleaned_data)
        messages.success(request, "Webhook created. Send a test to check that the endpoint answers.")
        return redirect("webhook-detail", pk=webhook.pk)
    return render(request, "webhooks/new.html", {"form": form})


@login_required
def webhook_detail(request, pk):
    webhook = get_object_or_404(Webhook, pk=pk)
    deliveries = Delivery.objects.filter(webhook=webhook).select_related("event").order_by("-pk")
    status = request.GET.get("status", "")
    if status in DeliveryStatus.values:
        deliveries = deliveries.filter(status=status)
    page = Paginator(deliveries, 25).get_page(request.GET.get("page"))
    context = {"webhook": webhook, "page": page, "status": status, "statuses": DeliveryStatus.values}
    if request.htmx and request.htmx.target == "deliveries":
        return render(request, "webhooks/_deliveries.html", context)

    offer = None
    form = WebhookForm(
        request.POST or None,
        creating=False,
        initial={
            "url": webhook.url,
            "description": webhook.description,
            "events": webhook.events,
            "active": webhook.active,
        },
    )
    if request.method == "POST" and request.POST.get("action") == "enable":
        webhook, offer = endpoints.update(webhook, active=True)
        messages.success(request, "Webhook enabled.")
        form = WebhookForm(creating=False, initial={**form.initial, "active": True})
    elif request.method == "POST" and form.is_valid():
        changes = {k: v for k, v in form.cleaned_data.items() if k != "secret" or v}
        webhook, offer = endpoints.update(webhook, **changes)
        if not offer:
            messages.success(request, "Saved.")
            return redirect("webhook-detail", pk=webhook.pk)
    context.update(webhook=webhook, form=form, offer=offer)
    return render(request, "webhooks/detail.html", context)


@login_required
@require_POST
def webhook_test(request, pk):
    webhook = get_object_or_404(Webhook, pk=pk)
    delivery = endpoints.send_test(webhook)
    delivery.refresh_from_db()
    if request.htmx:
        return render(request, "webhooks/_test_result.html", {"delivery": delivery})
    messages.info(request, f"Test delivery {delivery.public_id} queued.")
    return redirect("webhook-delivery", delivery_id=delivery.public_id)


@login_required
@require_POST
def webhook_replay(request, pk):
    webhook = get_object_or_404(Webhook, pk=pk)
    since = parse_datetime(request.POST.get("since", ""))
    if since is None:
        messages.error(request, "Choose when the replay should start.")
        return redirect("webhook-detail", pk=pk)
    try:
        result = endpoints.replay(webhook, since)
    except endpoints.Busy as exc:
        messages.error(request, str(exc))
    except OperationalError:
        messages.error(request, "The task queue is unavailable; nothing was replayed. Try again in a moment.")
    else:
        messages.success(
            request,
            f"Replaying {result['failedDeliveries']} failed deliveries and {result['missedEvents']} missed events.",
        )
    return redirect("webhook-detail", pk=pk)


@login_required
@require_POST
def webhook_delete(request, pk):
    webhook = get_object_or_404(Webhook, pk=pk)
    endpoints.delete(webhook)
    messages.success(request, f"Webhook {webhook.url} deleted, with its deliveries.")
    return redirect("webhooks")


@login_required
def delivery_detail(request, delivery_id):
    delivery = get_object_or_404(Delivery.objects.select_related("webhook", "event"), public_id=delivery_id)
    if request.htmx and request.htmx.target == "test-result":
        return render(request, "webhooks/_test_result.html", {"delivery": delivery})
    payload = json.dumps(json.loads(delivery.body), indent=2, ensure_ascii=False)
    attempts = delivery.attempts.order_by("-number")
    return render(request, "webhooks/delivery.html", {"delivery": delivery, "payload": payload, "attempts": attempts})


@login_required
@require_POST
def delivery_redeliver(request, delivery_id):
    delivery = get_object_or_404(Delivery, public_id=delivery_id)
    try:
        endpoints.redeliver(delivery)
    except endpoints.Busy as exc:
        messages.error(request, str(exc))
    except OperationalError:
        messages.error(request, "The task queue is unavailable; nothing was sent. Try again in a moment.")
    else:
        messages.success(request, "Redelivery queued; it shows up below as a manual attempt.")
    return redirect("webhook-delivery", delivery_id=delivery_id)
