"""A beat scheduler for worker tests: only the webhooks entries, kept in a local file.

Other apps' schedules (ticket sync, PR watching) would reach for services these tests do not fake.
"""

from celery.beat import PersistentScheduler


class WebhooksOnlyScheduler(PersistentScheduler):
    def __init__(self, app, *args, **kwargs):
        app.conf.beat_schedule = {k: v for k, v in app.conf.beat_schedule.items() if k.startswith("webhooks.")}
        super().__init__(app, *args, **kwargs)
