from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        from optio import events
        from optio.celery import app
        from webhooks import conf, delivery

        events.subscribe("webhooks", delivery.on_event, batch=delivery.on_events)
        # The sweeper is what sends retries and rescues deliveries of dead workers; the
        # maintenance job disables long-failing endpoints and applies the retention.
        app.conf.beat_schedule["webhooks.enqueue-due"] = {
            "task": "webhooks.enqueue_due",
            "schedule": conf.sweep_interval(),
        }
        app.conf.beat_schedule["webhooks.maintenance"] = {"task": "webhooks.maintenance", "schedule": 3600.0}
