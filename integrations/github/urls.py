from django.urls import path

from integrations.github import api, views

urlpatterns = [
    path("api/issues", api.IssueList.as_view(), name="api-issues"),
    path("api/issues/assign", api.IssueAssign.as_view(), name="api-issues-assign"),
    path("issues/", views.issue_list, name="issues"),
    path("issues/assign/", views.assign_issue, name="issues-assign"),
    path("issues/assign-all/", views.assign_all, name="issues-assign-all"),
]
