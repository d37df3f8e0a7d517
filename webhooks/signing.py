"""Webhook signatures (DESIGN.md, "Outgoing webhook wire format").

- `X-Optio-Signature`: lowercase hex HMAC-SHA256(secret, body), with the current secret.
- Standard Webhooks (https://www.standardwebhooks.com/): `webhook-id`, `webhook-timestamp`,
  `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, where key is
  the base64-decoded part of a `whsec_…` secret, or the secret's UTF-8 bytes otherwise. During
  a rotation every live secret signs, space-separated, so receivers holding either key verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as pysecrets
from collections.abc import Sequence

WHSEC_PREFIX = "whsec_"
SIGNATURE_HEADERS = ("x-optio-signature", "webhook-signature")
REDACTED = "[redacted]"


class InvalidSecret(ValueError):
    pass


def validate_secret(secret: str) -> str:
    if not isinstance(secret, str) or not secret:
        raise InvalidSecret("A secret is required: the receiver uses it to verify each request's signature.")
    if len(secret) > 512:
        raise InvalidSecret("The secret is longer than 512 characters.")
    if secret.startswith(WHSEC_PREFIX):
        try:
            key = base64.b64decode(secret[len(WHSEC_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not key:
            raise InvalidSecret(
                "A secret starting with whsec_ must be followed by base64 (Standard Webhooks); "
                "leave out the whsec_ prefix to use the text as it is."
            )
    return secret


def key_bytes(secret: str) -> bytes:
    if secret.startswith(WHSEC_PREFIX):
        return base64.b64decode(secret[len(WHSEC_PREFIX) :])
    return secret.encode()


def generate_secret() -> str:
    return WHSEC_PREFIX + base64.b64encode(pysecrets.token_bytes(24)).decode()


def hex_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    return "v1," + base64.b64encode(hmac.new(key_bytes(secret), signed, hashlib.sha256).digest()).decode()


def headers(event: str, msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> dict[str, str]:
    """Every header a delivery attempt carries. `secrets[0]` is current; the rest are rotating out."""
    return {
        "Content-Type": "application/json",
        "X-Optio-Event": event,
        "X-Optio-Signature": hex_signature(secrets[0], body),
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(standard_signature(s, msg_id, timestamp, body) for s in secrets),
    }


def redact(sent: dict[str, str]) -> dict[str, str]:
    """Headers as stored on an Attempt: signatures replaced (they are derived from the secret)."""
    return {k: (REDACTED if k.lower() in SIGNATURE_HEADERS else v) for k, v in sent.items()}


def mask(secret: str) -> str:
    """How a stored secret is shown: its kind, never any of its characters."""
    return (WHSEC_PREFIX if secret.startswith(WHSEC_PREFIX) else "") + "••••••••"
