from django.urls import path

from webhooks import api, views

urlpatterns = [
    path("api/webhooks", api.WebhookList.as_view(), name="api-webhooks"),
    path("api/webhooks/<int:pk>", api.WebhookDetail.as_view(), name="api-webhook"),
    path("api/webhooks/<int:pk>/deliveries", api.WebhookDeliveries.as_view(), name="api-webhook-deliveries"),
    path("api/webhooks/<int:pk>/test", api.WebhookTest.as_view(), name="api-webhook-test"),
    path("api/webhooks/<int:pk>/replay", api.WebhookReplay.as_view(), name="api-webhook-replay"),
    path("api/webhooks/deliveries/<str:delivery_id>", api.DeliveryDetail.as_view(), name="api-delivery"),
    path(
        "api/webhooks/deliveries/<str:delivery_id>/redeliver",
        api.DeliveryRedeliver.as_view(),
        name="api-delivery-redeliver",
    ),
    path("settings/webhooks/", views.webhook_list, name="webhooks"),
    path("settings/webhooks/new/", views.webhook_new, name="webhook-new"),
    path("settings/webhooks/<int:pk>/", views.webhook_detail, name="webhook-detail"),
    path("settings/webhooks/<int:pk>/test/", views.webhook_test, name="webhook-test"),
    path("settings/webhooks/<int:pk>/replay/", views.webhook_replay, name="webhook-replay"),
    path("settings/webhooks/<int:pk>/delete/", views.webhook_delete, name="webhook-delete"),
    path("settings/webhooks/deliveries/<str:delivery_id>/", views.delivery_detail, name="webhook-delivery"),
    path(
        "settings/webhooks/deliveries/<str:delivery_id>/redeliver/",
        views.delivery_redeliver,
        name="webhook-redeliver",
    ),
]
