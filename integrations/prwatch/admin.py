from django.contrib import admin

from integrations.prwatch.models import InboundDelivery, PullWatch, Writeback


@admin.register(PullWatch)
class PullWatchAdmin(admin.ModelAdmin):
    list_display = ["task", "pr_url", "verdict", "checked_at", "next_check_after", "last_error"]
    list_filter = ["verdict"]
    search_fields = ["pr_url"]
    raw_id_fields = ["task"]
    readonly_fields = ["fingerprint", "observed_at", "checked_at", "last_error", "last_error_at"]


@admin.register(InboundDelivery)
class InboundDeliveryAdmin(admin.ModelAdmin):
    list_display = ["delivery_id", "event", "action", "repo_full_name", "status", "received_at", "processed_at"]
    list_filter = ["event", "status"]
    search_fields = ["delivery_id", "repo_full_name"]
    readonly_fields = [f.name for f in InboundDelivery._meta.fields]

    def has_add_permission(self, request):
        return False  # deliveries come from GitHub


@admin.register(Writeback)
class WritebackAdmin(admin.ModelAdmin):
    list_display = ["task", "target", "action", "status", "attempts", "created_at", "sent_at"]
    list_filter = ["target", "action", "status"]
    raw_id_fields = ["task", "event"]
    readonly_fields = ["key", "payload", "steps_done", "attempts", "detail", "created_at", "sent_at"]
