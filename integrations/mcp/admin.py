from django.contrib import admin

from integrations.mcp.models import MCPServer


@admin.register(MCPServer)
class MCPServerAdmin(admin.ModelAdmin):
    list_display = ["name", "scope", "transport", "enabled", "updated_at"]
    list_filter = ["transport", "enabled", ("repo", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "command", "url"]
    list_editable = ["enabled"]
    # Definitions are checked (names, types, {{SECRET}} references) by the service behind the API and
    # Settings → MCP servers; the admin only switches servers on and off.
    readonly_fields = [
        "name",
        "repo",
        "transport",
        "command",
        "args",
        "env",
        "url",
        "headers",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request):
        return False
