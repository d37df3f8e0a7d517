from django import forms
from django.contrib import admin
from django.db import models

# The admin module is loaded in every process that runs system checks; registering the
# deploy checks here keeps them out of the app's event wiring in apps.py.
from optio import checks  # noqa: F401
from optio.models import ApiToken, Event, Repo, Secret, Task, TaskLog
from optio.repo_urls import InvalidRepoUrl, normalize_repo_url


class RepoForm(forms.ModelForm):
    class Meta:
        model = Repo
        fields = ["url"]  # ModelAdmin passes the full field list; this form only adds clean_url

    def clean_url(self):
        # Normalise here so a bad URL is a form error, and "already exists" compares canonical URLs.
        try:
            return normalize_repo_url(self.cleaned_data["url"])
        except InvalidRepoUrl as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(Repo)
class RepoAdmin(admin.ModelAdmin):
    form = RepoForm
    list_display = ["url", "default_branch", "writeback_enabled", "slack_enabled", "created_at"]
    list_filter = ["writeback_enabled", "slack_enabled"]
    search_fields = ["url"]
    exclude = ["slack_webhook_url_encrypted"]


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    list_display = ["name", "scope", "updated_at"]
    list_filter = [("repo", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name"]
    # The encrypted value is neither shown nor editable here; set values through the API.
    fields = ["name", "repo", "created_at", "updated_at"]
    readonly_fields = ["name", "repo", "created_at", "updated_at"]

    def has_add_permission(self, request):
        return False


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["title", "repo", "state", "ticket_source", "ticket_external_id", "cost_usd", "created_at"]
    list_filter = ["state", "ticket_source", "repo"]
    search_fields = ["title", "ticket_external_id", "pr_url"]
    date_hierarchy = "created_at"
    # State changes go through the lifecycle service (events, compare-and-set), never a form.
    readonly_fields = ["state", "log_seq", "created_at", "updated_at", "started_at", "finished_at"]
    raw_id_fields = ["created_by"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def has_add_permission(self, request):
        return False  # a task created here would skip task.created; use the API or the Issues view


class _ReadOnlyAdmin(admin.ModelAdmin):
    """History written by services: viewable and deletable, never edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(TaskLog)
class TaskLogAdmin(_ReadOnlyAdmin):
    list_display = ["task", "seq", "timestamp", "stream", "type", "short_content"]
    list_filter = ["stream", "type"]
    search_fields = ["content"]
    raw_id_fields = ["task"]

    @admin.display(description="content")
    def short_content(self, obj):
        return obj.content[:120]


@admin.register(Event)
class EventAdmin(_ReadOnlyAdmin):
    list_display = ["seq", "public_id", "name", "task", "created_at", "dispatched_at"]
    list_filter = ["name", ("dispatched_at", admin.EmptyFieldListFilter)]
    search_fields = ["public_id"]
    raw_id_fields = ["task"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "expires_at"]
    list_filter = ["user"]
    fields = ["user", "name", "prefix", "created_at", "last_used_at", "expires_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]

    def has_add_permission(self, request):
        return False  # tokens are shown once: create them with create_api_token or the login API
