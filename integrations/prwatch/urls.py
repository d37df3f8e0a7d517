from django.urls import path

from integrations.prwatch import hooks

urlpatterns = [
    path("hooks/github", hooks.github_hook, name="github-hook"),
]
