from django.contrib import admin
from django.urls import include, path

from optio import repo_pages, views

urlpatterns = [
    path("", views.task_list, name="tasks"),
    path("tasks/<uuid:pk>/", views.task_detail, name="task-detail"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("settings/", views.settings_index, name="settings"),
    path("settings/repos/", repo_pages.repo_list, name="repos"),
    path("settings/repos/<int:pk>/", repo_pages.repo_settings, name="repo-settings"),
    path("admin/", admin.site.urls),
    path("", include("optio.api.urls")),
    # Each app owns its API routes (api/...), its pages (settings/..., issues/) and inbound hooks (hooks/...).
    path("", include("integrations.urls")),
    path("", include("tickets.urls")),
    path("", include("webhooks.urls")),
]
