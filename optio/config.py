"""Every environment variable Optio reads, parsed and validated in one place.

Settings import `CONFIG`; nothing else reads `os.environ` for configuration. A bad value
stops start-up with an error naming the variable, rather than failing later mid-request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A configuration variable holds a value Optio cannot use."""


def redact(url: str) -> str:
    """The URL with any password replaced, so error messages and logs never carry it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid URL ({exc}); got {redact(value)!r}") from None
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ConfigError(
            f"{name} must be a URL starting with one of {', '.join(s + '://' for s in schemes)}; got {redact(value)!r}"
        )
    return value


def _database(value: str) -> dict:
    """Django's DATABASES entry for DATABASE_URL, or a ConfigError naming it."""
    import dj_database_url

    _url("DATABASE_URL", value, ("postgres", "postgresql", "sqlite"))
    try:
        db = dj_database_url.parse(value)
    except Exception as exc:
        raise ConfigError(f"DATABASE_URL cannot be parsed ({exc}); got {redact(value)!r}") from None
    if db["ENGINE"].endswith("postgresql") and not db["NAME"]:
        raise ConfigError(
            f"DATABASE_URL must name a database, like postgres://user@host:5432/optio; got {redact(value)!r}"
        )
    return db


def _seconds(env: dict, name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number of seconds; got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1 second; got {value}")
    return value


def _flag(env: dict, name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0; got {raw!r}")


@dataclass(frozen=True)
class Config:
    database_url: str | None
    redis_url: str | None
    secret_keys: tuple[str, ...]  # empty: use the generated key file under var/
    public_url: str
    github_api_url: str
    linear_api_url: str
    ticket_sync_interval: int
    pr_watch_interval: int
    allow_private_urls: bool
    var_dir: Path
    debug: bool
    django_secret_key: str | None
    allowed_hosts: tuple[str, ...]

    @property
    def embedded(self) -> bool:
        return self.redis_url is None


def load(env: dict | None = None) -> Config:
    env = dict(os.environ if env is None else env)
    database_url = env.get("DATABASE_URL", "").strip() or None
    if database_url:
        _database(database_url)
    redis_url = env.get("REDIS_URL", "").strip() or None
    if redis_url:
        _url("REDIS_URL", redis_url, ("redis", "rediss", "unix"))

    keys = tuple(k.strip() for k in env.get("OPTIO_SECRET_KEYS", "").split(",") if k.strip())
    if keys:
        from cryptography.fernet import Fernet

        for i, key in enumerate(keys):
            try:
                Fernet(key)
            except Exception:
                raise ConfigError(
                    f"OPTIO_SECRET_KEYS entry {i + 1} is not a Fernet key (32 url-safe base64-encoded bytes); "
                    "generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
                ) from None

    public_url = _url(
        "OPTIO_PUBLIC_URL", env.get("OPTIO_PUBLIC_URL", "").strip() or "http://127.0.0.1:8000", ("http", "https")
    )
    github = _url(
        "GITHUB_API_URL", env.get("GITHUB_API_URL", "").strip() or "https://api.github.com", ("http", "https")
    )
    linear = _url(
        "LINEAR_API_URL", env.get("LINEAR_API_URL", "").strip() or "https://api.linear.app/graphql", ("http", "https")
    )
    hosts = tuple(h.strip() for h in env.get("OPTIO_ALLOWED_HOSTS", "").split(",") if h.strip())
    hosts = hosts or ("127.0.0.1", "localhost", "[::1]")
    # The public URL's host always answers: links Optio sends out must work.
    public_host = urlsplit(public_url).hostname
    if public_host and public_host not in hosts:
        hosts += (public_host,)

    return Config(
        database_url=database_url,
        redis_url=redis_url,
        secret_keys=keys,
        public_url=public_url.rstrip("/"),
        github_api_url=github.rstrip("/"),
        linear_api_url=linear,
        ticket_sync_interval=_seconds(env, "OPTIO_TICKET_SYNC_INTERVAL", 60),
        pr_watch_interval=_seconds(env, "OPTIO_PR_WATCH_INTERVAL", 30),
        allow_private_urls=_flag(env, "OPTIO_ALLOW_PRIVATE_URLS"),
        var_dir=Path(env.get("OPTIO_VAR_DIR", "").strip() or BASE_DIR / "var"),
        debug=_flag(env, "OPTIO_DEBUG"),
        django_secret_key=env.get("DJANGO_SECRET_KEY", "").strip() or None,
        allowed_hosts=hosts,
    )
