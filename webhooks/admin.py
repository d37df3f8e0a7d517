from django.contrib import admin

from webhooks.models import Attempt, Delivery, Webhook


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ["url", "active", "health", "last_success_at", "failing_since", "created_at"]
    list_filter = ["active"]
    search_fields = ["url", "description"]
    # Secrets are set through the API or Settings → Webhooks, never shown here.
    exclude = ["secret_encrypted", "previous_secret_encrypted"]
    readonly_fields = ["last_success_at", "last_failure_at", "failing_since", "last_error", "disabled_at"]


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    fields = ["number", "trigger", "started_at", "duration_ms", "response_status", "success", "error_class", "error"]
    readonly_fields = fields


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["public_id", "webhook", "event_name", "status", "status_code", "attempt_count", "created_at"]
    list_filter = ["status", "event_name"]
    search_fields = ["public_id"]
    inlines = [AttemptInline]
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Attempt)
class AttemptAdmin(admin.ModelAdmin):
    list_display = [
        "delivery",
        "number",
        "trigger",
        "started_at",
        "response_status",
        "success",
        "error_class",
        "duration_ms",
    ]
    list_filter = ["success", "trigger", "error_class"]
    raw_id_fields = ["delivery"]
    readonly_fields = [f.name for f in Attempt._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # an attempt is a record of what was sent; it never changes
