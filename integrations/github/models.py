"""What the GitHub integration stores: the ETag cache behind conditional requests."""

from __future__ import annotations

from django.db import models


class CachedResponse(models.Model):
    """The last 200 body GitHub sent for one GET URL, with its ETag.

    A later request for the same URL sends `If-None-Match`; GitHub answers 304 (which does
    not count against the rate limit) and the body stored here is used instead.
    `key` covers the token too, because GitHub's answers (and ETags) vary by who asks.
    `scope` groups the pages of one listing so they can be loaded with one query.
    """

    key = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=64, db_index=True)
    url = models.TextField()
    etag = models.CharField(max_length=200)
    link = models.TextField(blank=True, default="", help_text="The Link header sent with the body (pagination)")
    body = models.TextField()
    fetched_at = models.DateTimeField(help_text="When GitHub last sent the body")
    checked_at = models.DateTimeField(help_text="When the body was last written or revalidated")

    class Meta:
        verbose_name = "cached GitHub response"

    def __str__(self) -> str:
        return self.url
