from django.apps import AppConfig


class MCPConfig(AppConfig):
    name = "integrations.mcp"
    label = "mcp"
    verbose_name = "MCP"
