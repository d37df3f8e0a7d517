"""Small validators shared by the sources' `clean()`; each raises ConfigError naming the field."""

from __future__ import annotations

import re

from optio.repo_urls import InvalidRepoUrl, normalize_repo_url
from tickets.providers.base import ConfigError

MAX_LABELS = 50


def reject_unknown(config: dict, allowed: set[str], source_label: str) -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ConfigError(
            f"{source_label} providers do not take {', '.join(unknown)}; the config keys are: {', '.join(sorted(allowed))}.",
            {key: ["Unknown key."] for key in unknown},
        )


def optional_text(config: dict, key: str, *, max_length: int = 200) -> str | None:
    value = config.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value.strip()) > max_length:
        raise ConfigError(f"{key} must be text of at most {max_length} characters.", {key: ["Must be text."]})
    return value.strip()


def required_secret(credentials: dict, key: str, what: str) -> str:
    value = credentials.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} is required: {what}.", {key: ["This field is required."]})
    return value.strip()


def optional_secret(credentials: dict, key: str) -> str | None:
    value = credentials.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 1000:
        raise ConfigError(f"{key} must be text.", {key: ["Must be text."]})
    return value.strip()


def labels(config: dict, key: str = "labels") -> list[str]:
    value = config.get(key)
    if value is None:
        return []
    if isinstance(value, str):  # a form field or a hand-written "a, b"
        value = [part for part in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} must be a list of label names.", {key: ["Must be a list of strings."]})
    cleaned = []
    for raw in value:
        name = raw.strip()
        if not name:
            continue
        if len(name) > 100:
            raise ConfigError(f"The label {name[:20]!r}… is longer than 100 characters.", {key: ["Too long."]})
        if name not in cleaned:
            cleaned.append(name)
    if len(cleaned) > MAX_LABELS:
        raise ConfigError(f"At most {MAX_LABELS} labels.", {key: ["Too many labels."]})
    return cleaned


def repo_url(value, key: str) -> str:
    try:
        return normalize_repo_url(value)
    except InvalidRepoUrl as exc:
        raise ConfigError(f"{key}: {exc}", {key: [str(exc)]}) from None


def repo_urls(config: dict, key: str = "repos") -> list[str]:
    value = config.get(key)
    if isinstance(value, str):
        value = [part for part in re.split(r"[\s,]+", value) if part]
    if not isinstance(value, list) or not value:
        raise ConfigError(
            f"{key} must list at least one repository URL, like https://github.com/owner/name.",
            {key: ["At least one repository URL is required."]},
        )
    urls = []
    for item in value:
        url = repo_url(item, key)
        if url not in urls:
            urls.append(url)
    return urls
