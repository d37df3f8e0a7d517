from django.urls import path

from integrations.mcp import api, views

urlpatterns = [
    path("api/mcp-servers", api.MCPServerList.as_view()),
    path("api/mcp-servers/<int:pk>", api.MCPServerDetail.as_view()),
    path("api/tasks/<uuid:pk>/mcp-config", api.TaskMCPConfig.as_view()),
    path("api/repos/<int:pk>/mcp-config", api.RepoMCPConfig.as_view()),
    path("settings/mcp/", views.mcp_settings, name="mcp-settings"),
    path("settings/mcp/new/", views.server_form, name="mcp-new"),
    path("settings/mcp/<int:pk>/", views.server_form, name="mcp-edit"),
    path("settings/mcp/<int:pk>/delete/", views.server_delete, name="mcp-delete"),
    path("settings/mcp/repos/<int:pk>/", views.repo_effective, name="mcp-effective"),
]
