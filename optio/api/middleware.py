"""Request guards that must run before any view: body size, and JSON errors under /api/."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from optio.api.errors import json_error

log = logging.getLogger(__name__)


class ApiMiddleware:
    """Answers oversized bodies with 413 before anything reads them, and keeps /api/ errors JSON.

    Django only enforces DATA_UPLOAD_MAX_MEMORY_SIZE when `request.body` is read; DRF's
    parsers read the stream directly, so without this a huge JSON body would be parsed.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return json_error("The Content-Length header is not a number.", 400)
        if limit is not None and length > limit:
            return json_error(
                f"The request body is too large ({length} bytes); the limit is {limit} bytes.",
                413,
                {"limit": limit},
            )
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code == 404
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return json_error(f"There is no API route at {request.path}; the routes are listed at /api/docs.", 404)
        return response

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not request.path.startswith("/api/"):
            return None  # Django's own error page
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error("Optio hit an internal error; it has been logged. Try again or report it.", 500)
