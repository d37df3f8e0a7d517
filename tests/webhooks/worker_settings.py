"""Settings for the real Celery worker processes that tests/webhooks/test_workers.py starts.

The shipped settings, plus a short lease and a fast sweeper so a killed worker's delivery is
rescued within seconds rather than a minute, and a queue of the test's own.
"""

import os

from optio.settings import *  # noqa: F403

OPTIO_WEBHOOK_TIMEOUT = 2
OPTIO_WEBHOOK_LEASE = float(os.environ.get("OPTIO_TEST_WEBHOOK_LEASE", "3"))
OPTIO_WEBHOOK_SWEEP_INTERVAL = 0.5
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("OPTIO_TEST_QUEUE", "celery")
CELERY_BEAT_SCHEDULER = "tests.webhooks.beat:WebhooksOnlyScheduler"
