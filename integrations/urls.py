from django.urls import include, path

urlpatterns = [
    path("", include("integrations.github.urls")),
    path("", include("integrations.slack.urls")),
    path("", include("integrations.mcp.urls")),
    path("", include("integrations.linear.urls")),
    path("", include("integrations.prwatch.urls")),
]
