"""Provider credentials at rest: encrypted with OPTIO_SECRET_KEYS and movable to a new key."""

from __future__ import annotations

from io import StringIO

from cryptography.fernet import Fernet
from django.core.management import call_command

from optio import crypto
from tickets import services, sync
from tickets.models import TicketProvider


def test_rotating_moves_provider_credentials_to_the_new_key(db, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CONFIG = settings.CONFIG.__class__(**{**settings.CONFIG.__dict__, "secret_keys": (old,)})
    crypto.reset_keys()
    provider = services.create_provider("linear", {"apiKey": "lin_api_secret"}).provider

    settings.CONFIG = settings.CONFIG.__class__(**{**settings.CONFIG.__dict__, "secret_keys": (new, old)})
    crypto.reset_keys()
    out = StringIO()
    call_command("rotate_ticket_credentials", stdout=out)
    assert "1 ticket provider" in out.getvalue()

    settings.CONFIG = settings.CONFIG.__class__(**{**settings.CONFIG.__dict__, "secret_keys": (new,)})
    crypto.reset_keys()
    assert TicketProvider.objects.get(pk=provider.pk).get_credentials() == {"apiKey": "lin_api_secret"}


def test_credentials_that_no_key_decrypts_are_a_clear_sync_error(db, settings, linear, webapp):
    provider = services.create_provider("linear", {"apiKey": "lin_api_test_key", "repoUrl": webapp.url}).provider
    settings.CONFIG = settings.CONFIG.__class__(
        **{**settings.CONFIG.__dict__, "secret_keys": (Fernet.generate_key().decode(),)}
    )
    crypto.reset_keys()
    result = sync.sync_provider(provider.pk)
    assert result.status == "failed" and result.error_kind == "config"
    assert "cannot be decrypted" in result.error
