from django.contrib import admin

from integrations.github.models import CachedResponse


@admin.register(CachedResponse)
class CachedResponseAdmin(admin.ModelAdmin):
    """Read-only: rows are written by the client; deleting one only costs a full re-fetch."""

    list_display = ["url", "etag", "fetched_at", "checked_at"]
    search_fields = ["url"]
    fields = ["url", "etag", "link", "fetched_at", "checked_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
