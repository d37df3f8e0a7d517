from django.apps import AppConfig


class GitHubConfig(AppConfig):
    name = "integrations.github"
    label = "github"
    verbose_name = "GitHub"

    def ready(self):
        from optio.celery import app

        app.conf.beat_schedule["github-prune-etag-cache"] = {
            "task": "github.prune_etag_cache",
            "schedule": 24 * 3600,
        }
