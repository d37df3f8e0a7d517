"""Secrets service: the only code that writes Secret rows or decrypts their values."""

from __future__ import annotations

import re

from django.db import transaction

from optio import crypto
from optio.models import Repo, Secret

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class InvalidSecretName(ValueError):
    pass


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidSecretName(
            "Secret names use letters, digits and underscores, start with a letter or underscore, "
            "and are at most 128 characters (for example GITHUB_TOKEN)."
        )
    return name


@transaction.atomic
def set_secret(name: str, value: str, repo: Repo | None = None) -> tuple[Secret, bool]:
    """Create or replace a secret in its scope. Returns (secret, created)."""
    validate_name(name)
    secret, created = Secret.objects.select_for_update().get_or_create(
        name=name, repo=repo, defaults={"value_encrypted": crypto.encrypt(value)}
    )
    if not created:
        secret.value_encrypted = crypto.encrypt(value)
        secret.save(update_fields=["value_encrypted", "updated_at"])
    return secret, created


def reveal(secret: Secret) -> str:
    return crypto.decrypt(secret.value_encrypted)


def lookup(name: str, repo: Repo | None = None) -> Secret | None:
    """The secret `name` as a task in `repo` sees it: the repository's own first, then global."""
    if repo is not None:
        found = Secret.objects.filter(name=name, repo=repo).first()
        if found:
            return found
    return Secret.objects.filter(name=name, repo__isnull=True).first()


def get_value(name: str, repo: Repo | None = None) -> str | None:
    secret = lookup(name, repo)
    return reveal(secret) if secret else None


def resolve_many(names: set[str], repo: Repo | None = None) -> tuple[dict[str, str], list[str]]:
    """Resolve several names in two queries. Returns (values, sorted missing names)."""
    rows = Secret.objects.filter(name__in=names).filter(repo__isnull=True)
    values = {s.name: s for s in rows}
    if repo is not None:
        values.update({s.name: s for s in Secret.objects.filter(name__in=names, repo=repo)})
    missing = sorted(names - values.keys())
    return {name: reveal(s) for name, s in values.items()}, missing


def rotate_all() -> int:
    """Re-encrypt every stored secret under the newest key. Returns how many were rewritten."""
    count = 0
    for secret in Secret.objects.select_for_update().iterator():
        secret.value_encrypted = crypto.rotate(secret.value_encrypted)
        secret.save(update_fields=["value_encrypted"])
        count += 1
    return count
