from django.urls import path

from integrations.slack import api, views

urlpatterns = [
    path("api/slack/test", api.SlackTest.as_view(), name="slack-test"),
    # The "Send test" button of /settings/repos/<id>/ (the page itself lives in optio.repo_pages).
    path("settings/repos/<int:pk>/slack/test/", views.send_test, name="slack-settings-test"),
]
