"""Template tags for pages that follow the event stream live (static/optio/live.js)."""

from __future__ import annotations

from django import template
from django.db.models import Max

from optio.models import Event

register = template.Library()


@register.simple_tag
def latest_event_seq() -> int:
    """The newest /ws/events seq: a page rendered now resumes the stream after it.

    Read it before the rows: an event numbered later is delivered live, and applying it to
    a row that already shows it changes nothing."""
    return Event.objects.aggregate(m=Max("stream_seq"))["m"] or 0
