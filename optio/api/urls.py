from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authentication import SessionAuthentication

from optio.api import auth_views, views
from optio.auth import BearerTokenAuthentication

# The schema and its docs page also accept the dashboard's session, so a signed-in person can browse them.
_browsable = {"authentication_classes": [BearerTokenAuthentication, SessionAuthentication]}

urlpatterns = [
    path("api/health", views.Health.as_view(), name="api-health"),
    path("api/auth/login", auth_views.Login.as_view(), name="api-login"),
    path("api/auth/logout", auth_views.Logout.as_view()),
    path("api/auth/me", auth_views.Me.as_view()),
    path("api/schema", SpectacularAPIView.as_view(**_browsable), name="api-schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="api-schema", **_browsable), name="api-docs"),
    path("api/repos", views.RepoList.as_view()),
    path("api/repos/<int:pk>", views.RepoDetail.as_view()),
    path("api/secrets", views.SecretList.as_view()),
    path("api/secrets/<int:pk>", views.SecretDetail.as_view()),
    path("api/tasks", views.TaskList.as_view()),
    path("api/tasks/<uuid:pk>", views.TaskDetail.as_view()),
    path("api/tasks/<uuid:pk>/cancel", views.TaskCancel.as_view()),
    path("api/tasks/<uuid:pk>/retry", views.TaskRetry.as_view()),
    path("api/tasks/<uuid:pk>/transition", views.TaskTransition.as_view()),
    path("api/tasks/<uuid:pk>/logs", views.TaskLogs.as_view()),
]
