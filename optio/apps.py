from django.apps import AppConfig


class OptioConfig(AppConfig):
    name = "optio"
    verbose_name = "Optio"

    def ready(self):
        from optio import dispatch, events

        events.subscribe("optio.websockets", dispatch.to_events_group)
