from django.urls import path

from integrations.mcp import api

urlpatterns = [
    path("api/mcp-servers", api.MCPServerList.as_view()),
    path("api/mcp-servers/<int:pk>", api.MCPServerDetail.as_view()),
    path("api/tasks/<uuid:pk>/mcp-config", api.TaskMCPConfig.as_view()),
    path("api/repos/<int:pk>/mcp-config", api.RepoMCPConfig.as_view()),
]
