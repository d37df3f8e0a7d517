from django.apps import AppConfig


class OptioConfig(AppConfig):
    name = "optio"
    verbose_name = "Optio"

    def ready(self):
        from optio import dispatch, events
        from optio.celery import app
        from optio.tasks import SWEEP_INTERVAL

        events.subscribe("optio.websockets", dispatch.to_websockets, batch=dispatch.to_websockets_many)
        # Re-dispatch events nobody dispatched (broker down at commit, worker lost). A sweep
        # that waited longer than its interval is dropped: the next one does the same work.
        app.conf.beat_schedule["optio.sweep-events"] = {
            "task": "optio.sweep_events",
            "schedule": SWEEP_INTERVAL,
            "options": {"expires": SWEEP_INTERVAL * 2},
        }
