from django.contrib import admin

from tickets.models import TicketProvider


@admin.register(TicketProvider)
class TicketProviderAdmin(admin.ModelAdmin):
    list_display = ["id", "source", "enabled", "last_sync_at", "consecutive_failures", "last_error_kind"]
    list_filter = ["source", "enabled"]
    # Credentials are write-only: set them in Settings → Ticket providers or through the API.
    exclude = ["credentials_encrypted"]
    readonly_fields = [
        "last_sync_started_at", "last_sync_at", "last_sync_stats", "last_error", "last_error_kind",
        "last_error_at", "consecutive_failures", "disabled_reason", "next_sync_after", "lease_token",
        "lease_expires_at", "created_at", "updated_at",
    ]  # fmt: skip
