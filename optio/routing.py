from django.urls import path

from optio import consumers

websocket_urlpatterns = [
    path("ws/events", consumers.EventsConsumer.as_asgi()),
    path("ws/logs/<uuid:task_id>", consumers.LogsConsumer.as_asgi()),
]
