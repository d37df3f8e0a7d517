from django.urls import path

from optio.api import auth_views, views

urlpatterns = [
    path("api/health", views.Health.as_view(), name="api-health"),
    path("api/auth/login", auth_views.Login.as_view(), name="api-login"),
    path("api/auth/logout", auth_views.Logout.as_view()),
    path("api/auth/me", auth_views.Me.as_view()),
    # The schema and its docs page also accept the dashboard's session, so a signed-in person can browse them.
    path("api/schema", views.Schema.as_view(), name="api-schema"),
    path("api/docs", views.Docs.as_view(url_name="api-schema"), name="api-docs"),
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
