from django.urls import path

from tickets import api, views

urlpatterns = [
    path("api/tickets/providers", api.ProviderList.as_view()),
    path("api/tickets/providers/<int:pk>", api.ProviderDetail.as_view()),
    path("api/tickets/providers/<int:pk>/preview", api.ProviderPreview.as_view()),
    path("api/tickets/sync", api.SyncNow.as_view()),
    path("settings/providers/", views.providers_page, name="ticket-providers"),
    path("settings/providers/<int:pk>/", views.provider_page, name="ticket-provider"),
    path("settings/providers/<int:pk>/toggle/", views.provider_toggle, name="ticket-provider-toggle"),
    path("settings/providers/<int:pk>/sync/", views.provider_sync, name="ticket-provider-sync"),
    path("settings/providers/<int:pk>/preview/", views.provider_preview, name="ticket-provider-preview"),
    path("settings/providers/<int:pk>/delete/", views.provider_delete, name="ticket-provider-delete"),
]
