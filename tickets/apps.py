from django.apps import AppConfig


class TicketsConfig(AppConfig):
    name = "tickets"
    verbose_name = "Ticket providers"

    def ready(self) -> None:
        from django.conf import settings

        from optio.celery import app

        # django-celery-beat's DatabaseScheduler copies this entry into the database, where the
        # interval can be edited in the admin (Periodic tasks).
        app.conf.beat_schedule["tickets-sync"] = {
            "task": "tickets.sync_due",
            "schedule": float(settings.OPTIO_TICKET_SYNC_INTERVAL),
            # A tick that waited longer than one interval is stale (django-celery-beat's name for `expires`).
            "options": {"expire_seconds": settings.OPTIO_TICKET_SYNC_INTERVAL},
        }
