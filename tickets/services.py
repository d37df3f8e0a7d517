"""Writes to ticket providers: create, update, enable/disable, delete. Views and the API call these.

Repositories named in a provider's config (GitHub `repos`, Linear `repoUrl`) are connected
when the provider is saved, if they are not yet: adding a provider for a repository says
you want its tickets worked on, and refusing would make the first try fail for a new user.
Repositories named only by a Linear issue's `repo:owner/name` label are never connected
implicitly (anyone who can label an issue could add one); such issues are skipped and listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

from optio.models import Repo
from tickets.models import TicketProvider
from tickets.providers import REGISTRY, get_source
from tickets.providers.base import Cleaned, ConfigError, split_credentials


@dataclass
class Saved:
    provider: TicketProvider
    connected: list[str] = field(default_factory=list)  # repositories this save connected


def _source(name) -> object:
    if not isinstance(name, str) or name not in REGISTRY:
        choices = ", ".join(sorted(REGISTRY))
        raise ConfigError(f"source must be one of: {choices}.", {"source": [f"Choose one of: {choices}."]})
    return get_source(name)


def _clean(source, config, stored_credentials: dict[str, str]) -> Cleaned:
    if not isinstance(config, dict):
        raise ConfigError("config must be a JSON object.", {"config": ["Must be an object."]})
    plain, submitted = split_credentials(source, config)
    # A credential left out keeps the stored one: the API never returns it, so clients cannot send it back.
    credentials = dict(stored_credentials)
    for key, value in submitted.items():
        if value is None or value == "":
            credentials.pop(key, None)
        else:
            credentials[key] = value
    return source.clean(plain, credentials)


def _connect(urls: list[str]) -> list[str]:
    connected = []
    for url in urls:
        if Repo.objects.filter(url=url).exists():
            continue
        try:
            with transaction.atomic():
                Repo.objects.create(url=url)
            connected.append(url)
        except IntegrityError:  # connected concurrently: fine
            pass
    return connected


@transaction.atomic
def create_provider(source_name, config, *, enabled: bool = True) -> Saved:
    source = _source(source_name)
    cleaned = _clean(source, {} if config is None else config, {})
    provider = TicketProvider(source=source.name, config=cleaned.config, enabled=bool(enabled))
    provider.set_credentials(cleaned.credentials)
    provider.save()
    return Saved(provider, _connect(cleaned.repo_urls))


def merge_patch(target: dict, patch: dict) -> dict:
    """JSON Merge Patch (RFC 7386): keys in `patch` replace, null removes, objects merge."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_patch(result[key], value)
        else:
            result[key] = value
    return result


@transaction.atomic
def update_provider(provider: TicketProvider, *, config: dict | None = None, enabled: bool | None = None) -> Saved:
    """Change a provider. `config` is merged into the stored one (RFC 7386); credential keys
    in it replace the stored credential, `null` removes an optional one.

    A changed filter resets the cursor (as far as the source says), so tickets that match only
    now are picked up."""
    provider = TicketProvider.objects.select_for_update().get(pk=provider.pk)
    source = get_source(provider.source)
    connected: list[str] = []
    if config is not None:
        if not isinstance(config, dict):
            raise ConfigError("config must be a JSON object.", {"config": ["Must be an object."]})
        credential_patch = {k: config[k] for k in source.credential_keys if k in config}
        merged = merge_patch(provider.config, {k: v for k, v in config.items() if k not in source.credential_keys})
        cleaned = _clean(source, {**merged, **credential_patch}, provider.get_credentials())
        if cleaned.config != provider.config:
            provider.cursor = source.carry_cursor(provider.config, cleaned.config, provider.cursor)
            provider.skipped = {}
        provider.config = cleaned.config
        provider.set_credentials(cleaned.credentials)
        connected = _connect(cleaned.repo_urls)
    if enabled is not None:
        if enabled and not provider.enabled:
            clear_failures(provider)
        provider.enabled = bool(enabled)
    provider.save()
    return Saved(provider, connected)


def clear_failures(provider: TicketProvider) -> None:
    """Re-enabling starts with a clean slate: no failure count, no error, no deferral."""
    provider.consecutive_failures = 0
    provider.last_error = ""
    provider.last_error_kind = ""
    provider.last_error_at = None
    provider.disabled_reason = ""
    provider.next_sync_after = None


def delete_provider(provider: TicketProvider) -> None:
    """Tasks already created stay; only the provider and its stored credentials go."""
    provider.delete()
