"""Encryption at rest for secret values: MultiFernet over OPTIO_SECRET_KEYS.

The first key encrypts; every key decrypts, so adding a new key in front and running
`manage.py rotate_secret_keys` moves all stored values to it without downtime.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    keys = list(settings.CONFIG.secret_keys)
    if not keys:
        path = settings.VAR_DIR / "secret-keys"
        if not path.exists():
            path.write_text(Fernet.generate_key().decode() + "\n")
            path.chmod(0o600)
        keys = [k.strip() for k in path.read_text().replace(",", "\n").split() if k.strip()]
    return MultiFernet([Fernet(k) for k in keys])


def reset_keys() -> None:
    """Forget the cached key ring (tests and key rotation change it)."""
    _fernet.cache_clear()


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("A stored secret cannot be decrypted with the configured OPTIO_SECRET_KEYS.") from None


def rotate(token: str) -> str:
    return _fernet().rotate(token.encode()).decode()
