"""Ticket providers: where tickets come from, and what the sync engine remembers about each."""

from __future__ import annotations

import json

from django.db import models
from django.utils import timezone

from optio import crypto

# A provider that fails this many syncs in a row is disabled until someone re-enables it.
MAX_CONSECUTIVE_FAILURES = 5


class TicketProvider(models.Model):
    source = models.CharField(max_length=32, help_text="A key of tickets.providers.REGISTRY: github, linear")
    # Validated per source (tickets.providers); credentials are never kept here.
    config = models.JSONField(default=dict, blank=True)
    # Fernet token (optio.crypto) of a JSON object such as {"apiKey": "lin_api_…"}; write-only.
    credentials_encrypted = models.TextField(blank=True, default="")
    enabled = models.BooleanField(default=True)

    # Where the next sync continues; its shape belongs to the source. Advanced only in the
    # transaction that stores a page's tasks, so a crash or a failed page never skips a ticket.
    cursor = models.JSONField(default=dict, blank=True)
    last_sync_started_at = models.DateTimeField(null=True, blank=True)
    last_sync_at = models.DateTimeField(null=True, blank=True, help_text="When the last successful sync finished")
    last_sync_stats = models.JSONField(default=dict, blank=True)
    # Tickets the source could not turn into tasks (no repository, repository not connected), by external id.
    skipped = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_kind = models.CharField(max_length=32, blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_reason = models.TextField(blank=True, default="")
    # Set when the remote asked us to slow down (rate limit); beat skips the provider until then.
    next_sync_after = models.DateTimeField(null=True, blank=True)

    # The sync lease: one sync per provider at a time. A lease that is not renewed expires,
    # so a worker that died mid-sync never blocks the provider for long.
    lease_token = models.CharField(max_length=32, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.source} #{self.pk}"

    # Credentials: encrypted at rest, decrypted only by the code that calls the provider.

    def get_credentials(self) -> dict[str, str]:
        if not self.credentials_encrypted:
            return {}
        return json.loads(crypto.decrypt(self.credentials_encrypted))

    def set_credentials(self, values: dict[str, str]) -> None:
        values = {k: v for k, v in values.items() if v}
        self.credentials_encrypted = crypto.encrypt(json.dumps(values)) if values else ""

    @property
    def credential_names(self) -> list[str]:
        return sorted(self.get_credentials()) if self.credentials_encrypted else []

    @property
    def syncing(self) -> bool:
        return bool(self.lease_token) and self.lease_expires_at is not None and self.lease_expires_at > timezone.now()
