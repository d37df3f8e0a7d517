"""Signatures: checked with the independent `standardwebhooks` verifier and by recomputing the hex HMAC."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks import Webhook as StandardVerifier
from standardwebhooks.webhooks import WebhookVerificationError

from webhooks import signing

BODY = (
    b'{"id":"evt_1","event":"task.completed","timestamp":"2025-01-15T10:30:00Z","data":{"title":"\xc3\xa9t\xc3\xa9"}}'
)


def test_whsec_secret_verifies_with_standardwebhooks():
    secret = signing.generate_secret()
    headers = signing.headers("task.completed", "msg_1", int(time.time()), BODY, [secret])
    assert StandardVerifier(secret).verify(BODY, headers)["event"] == "task.completed"


def test_plain_secret_uses_its_utf8_bytes_as_the_key():
    secret = "correct horse battery staple"
    headers = signing.headers("task.failed", "msg_2", int(time.time()), BODY, [secret])
    StandardVerifier(secret.encode()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        StandardVerifier(base64.b64encode(b"another key").decode()).verify(BODY, headers)


def test_hex_signature_is_hmac_sha256_of_the_body_with_the_secret():
    secret = "whsec_c2VjcmV0LWJ5dGVz"
    headers = signing.headers("task.completed", "msg_3", 1736937000, BODY, [secret])
    assert headers["X-Optio-Signature"] == hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()
    assert headers["X-Optio-Signature"] == headers["X-Optio-Signature"].lower()
    assert headers["X-Optio-Event"] == "task.completed"
    assert headers["webhook-id"] == "msg_3" and headers["webhook-timestamp"] == "1736937000"
    signed = b"msg_3.1736937000." + BODY
    expected = base64.b64encode(hmac.new(b"secret-bytes", signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"


def test_during_rotation_both_secrets_sign():
    old, new = signing.generate_secret(), signing.generate_secret()
    headers = signing.headers("task.completed", "msg_4", int(time.time()), BODY, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    StandardVerifier(old).verify(BODY, headers)
    StandardVerifier(new).verify(BODY, headers)
    assert headers["X-Optio-Signature"] == signing.hex_signature(new, BODY)


def test_tampered_body_fails_verification():
    secret = signing.generate_secret()
    headers = signing.headers("task.completed", "msg_5", int(time.time()), BODY, [secret])
    with pytest.raises(WebhookVerificationError):
        StandardVerifier(secret).verify(BODY.replace(b"evt_1", b"evt_2"), headers)


def test_redaction_hides_signatures_and_keeps_the_rest():
    headers = signing.headers("task.completed", "msg_6", 1, BODY, ["s3cret"])
    stored = signing.redact(headers)
    assert stored["X-Optio-Signature"] == stored["webhook-signature"] == "[redacted]"
    assert stored["webhook-id"] == "msg_6" and stored["X-Optio-Event"] == "task.completed"


@pytest.mark.parametrize("bad", ["", "whsec_", "whsec_not base64!", "x" * 513])
def test_unusable_secrets_are_refused(bad):
    with pytest.raises(signing.InvalidSecret):
        signing.validate_secret(bad)


def test_mask_shows_no_character_of_the_secret():
    assert signing.mask("whsec_abcdef") == "whsec_••••••••"
    assert "cret" not in signing.mask("my-secret")
