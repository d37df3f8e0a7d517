"""The Celery app. Production runs `celery -A optio worker` and `celery -A optio beat`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "optio.settings")

app = Celery("optio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
