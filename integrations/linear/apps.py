from django.apps import AppConfig


class LinearConfig(AppConfig):
    name = "integrations.linear"
    label = "linear"
    verbose_name = "Linear"
