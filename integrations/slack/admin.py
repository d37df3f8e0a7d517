from django.contrib import admin

from integrations.slack.models import SlackNotification


@admin.register(SlackNotification)
class SlackNotificationAdmin(admin.ModelAdmin):
    list_display = ["event", "repo", "status", "attempts", "last_status_code", "created_at", "sent_at"]
    list_filter = ["status", "repo"]
    readonly_fields = [f.name for f in SlackNotification._meta.fields]

    def has_add_permission(self, request):
        return False
