from django.apps import AppConfig


class PrWatchConfig(AppConfig):
    name = "integrations.prwatch"
    label = "prwatch"
    verbose_name = "PR watcher and GitHub hooks"

    def ready(self) -> None:
        from django.conf import settings

        from integrations.prwatch import writeback
        from optio import events
        from optio.celery import app

        # Write-back reacts to task events, so it works whoever moved the task (watcher, hook, API, runner).
        events.subscribe("prwatch.writeback", writeback.on_event)
        # django-celery-beat's DatabaseScheduler copies this entry into the database (editable in the admin).
        app.conf.beat_schedule["prwatch-poll"] = {
            "task": "prwatch.poll",
            "schedule": float(settings.OPTIO_PR_WATCH_INTERVAL),
            "options": {"expires": settings.OPTIO_PR_WATCH_INTERVAL},
        }
        app.conf.beat_schedule["prwatch-prune-deliveries"] = {"task": "prwatch.prune_deliveries", "schedule": 24 * 3600}
