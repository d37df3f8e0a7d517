from django.apps import AppConfig


class SlackConfig(AppConfig):
    name = "integrations.slack"
    label = "slack"
    verbose_name = "Slack"

    def ready(self):
        from integrations.slack import notifier
        from integrations.slack.redact import install_log_redaction
        from optio import events
        from optio.celery import app

        events.subscribe("slack", notifier.on_event)
        app.conf.beat_schedule["slack-sweep"] = {"task": "slack.sweep", "schedule": 60.0}
        install_log_redaction()
