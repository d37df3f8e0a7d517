"""POST /hooks/github: GitHub's webhook deliveries, signature first.

Order matters (and is tested): the secret must exist, then the `X-Hub-Signature-256` HMAC
of the raw body must match it, and only then is anything in the request read. The work a
delivery calls for runs in Celery after the ledger row commits, so GitHub gets its answer
in milliseconds (it gives up after 10 seconds).
https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
"""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import parse_qs

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from integrations.prwatch import deliveries
from optio.api.errors import json_error
from optio.models import Secret
from optio.secrets import reveal

SECRET_NAME = "GITHUB_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Hub-Signature-256"


def candidate_secrets() -> list[tuple[int | None, str]]:
    """(repo id or None for the global one, value) of every GITHUB_WEBHOOK_SECRET.

    A repository's own secret lets each repository's webhook use a different value; which one
    signed a delivery is found by trying each, so nothing in the body is read before it is verified.
    """
    return [(s.repo_id, reveal(s)) for s in Secret.objects.filter(name=SECRET_NAME).order_by("repo_id")]


def verify(body: bytes, header: str, secrets: list[tuple[int | None, str]]) -> tuple[bool, int | None]:
    """(valid, repo id of the matching secret or None for the global one)."""
    scheme, _, given = header.strip().partition("=")
    if scheme != "sha256" or not given:
        return False, None
    for repo_id, value in secrets:
        expected = hmac.new(value.encode(), body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, given.strip().lower()):
            return True, repo_id
    return False, None


@csrf_exempt  # GitHub cannot send a CSRF token; the HMAC signature is what authenticates it
def github_hook(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return json_error("This is GitHub's webhook receiver; GitHub sends POST requests here.", 405)
    try:
        body = request.body
    except RequestDataTooBig:
        return json_error("The delivery is larger than Optio accepts.", 413)

    secrets = candidate_secrets()
    if not secrets:
        return json_error(
            f"Optio has no {SECRET_NAME} secret, so it cannot check that deliveries come from GitHub and refuses "
            f'them. Set one with POST /api/secrets {{"name": "{SECRET_NAME}", "value": "<random string>"}} and '
            "enter the same value as the webhook's Secret in GitHub.",
            403,
            {"secret": SECRET_NAME},
        )
    header = request.headers.get(SIGNATURE_HEADER, "")
    if not header:
        return json_error(
            f"The delivery has no {SIGNATURE_HEADER} header; set the webhook's Secret in GitHub to the value of "
            f"Optio's {SECRET_NAME} secret.",
            401,
        )
    valid, signed_for = verify(body, header, secrets)
    if not valid:
        return json_error(
            f"The {SIGNATURE_HEADER} signature does not match the body; the webhook's Secret in GitHub must equal "
            f"Optio's {SECRET_NAME} secret.",
            401,
        )

    event = request.headers.get("X-GitHub-Event", "").strip()
    delivery_id = request.headers.get("X-GitHub-Delivery", "").strip()
    if not event or not delivery_id:
        return json_error(
            "A GitHub delivery carries X-GitHub-Event and X-GitHub-Delivery headers; one is missing.", 400
        )
    payload = _payload(body, request.content_type or "")
    if not isinstance(payload, dict):
        return json_error(
            "The delivery body is not a JSON object; set the webhook's Content type to application/json.", 400
        )
    result = deliveries.receive(delivery_id[:100], event[:64], payload, signed_for=signed_for)
    return JsonResponse(result.body, status=result.status)


def _payload(body: bytes, content_type: str):
    """JSON, or the `payload=` form field GitHub sends with Content type application/x-www-form-urlencoded."""
    try:
        if content_type == "application/x-www-form-urlencoded":
            values = parse_qs(body.decode("utf-8"), max_num_fields=10).get("payload")
            return json.loads(values[0]) if values else None
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
