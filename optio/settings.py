"""Django settings. Every environment value comes from `optio.config`."""

from __future__ import annotations

import secrets as _secrets

import dj_database_url

from optio.config import BASE_DIR, ConfigError, load

try:
    CONFIG = load()
except ConfigError as exc:  # start-up must name the variable, not show a traceback deep in Django
    raise SystemExit(f"Optio configuration error: {exc}") from None

VAR_DIR = CONFIG.var_dir
try:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    (VAR_DIR / "staticfiles").mkdir(exist_ok=True)
except OSError as exc:
    raise SystemExit(
        f"Optio configuration error: OPTIO_VAR_DIR {str(VAR_DIR)!r} cannot be created ({exc.strerror})"
    ) from None


def _persistent_key(filename: str, make) -> str:
    path = VAR_DIR / filename
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = CONFIG.django_secret_key or _persistent_key("django-secret-key", lambda: _secrets.token_urlsafe(50))
DEBUG = CONFIG.debug
ALLOWED_HOSTS = list(CONFIG.allowed_hosts)
EMBEDDED = CONFIG.embedded

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from here, not a CDN: /api/docs works offline
    "django_htmx",
    "django_celery_beat",
    "channels",
    "optio",
    "integrations",
    "integrations.github",
    "integrations.linear",
    "integrations.slack",
    "integrations.mcp",
    "integrations.prwatch",
    "tickets",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "optio.api.middleware.ApiMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "optio.urls"
ASGI_APPLICATION = "optio.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if CONFIG.database_url:
    DATABASES = {"default": dj_database_url.parse(CONFIG.database_url, conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "optio.sqlite3",
            "OPTIONS": {
                # WAL lets the HTTP thread read while the worker thread writes; the timeout makes
                # writers queue for the lock instead of failing with "database is locked".
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"].setdefault("TEST", {"NAME": VAR_DIR / "test.sqlite3"})

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve straight from static/ without a collectstatic step

# Request bodies: DRF reads them through Django, so this is what turns a huge body into a 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

if CONFIG.redis_url:
    CACHES = {"default": {"BACKEND": "optio.cache.RedisCache", "LOCATION": CONFIG.redis_url}}
    # Redis pub/sub channels ignore the database number, so the prefix carries it: two
    # installs (or test runs) sharing one Redis on different DBs must not see each other's frames.
    from urllib.parse import urlsplit as _urlsplit

    _redis_db = _urlsplit(CONFIG.redis_url).path.strip("/") or "0"
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [CONFIG.redis_url], "prefix": f"optio.{_redis_db}."},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "optio.channel_layer.ThreadSafeInMemoryChannelLayer"}}

# Celery: Redis in production; in embedded mode an in-process broker shared by the
# worker and beat threads that `optio.embedded` starts.
CELERY_BROKER_URL = CONFIG.redis_url or "memory://localhost/"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Without this Celery's Django fixup closes the DB connection around every task (see DESIGN.md).
CELERY_DB_REUSE_MAX = 1000

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["optio.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "optio.api.pagination.Pagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "optio.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Optio API",
    "DESCRIPTION": "Turn tickets into coding-agent tasks and report what happens to them.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several apps have a "status" choice set; name each enum after what it describes.
    "ENUM_NAME_OVERRIDES": {"DeliveryStatusEnum": "webhooks.models.DeliveryStatus"},
    # Every operation documents the error shape, so clients (and the schemathesis test) can rely on it.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "optio.api.errors.document_error_responses",
    ],
}

OPTIO_PUBLIC_URL = CONFIG.public_url
OPTIO_ALLOW_PRIVATE_URLS = CONFIG.allow_private_urls
GITHUB_API_URL = CONFIG.github_api_url
LINEAR_API_URL = CONFIG.linear_api_url
OPTIO_TICKET_SYNC_INTERVAL = CONFIG.ticket_sync_interval
OPTIO_PR_WATCH_INTERVAL = CONFIG.pr_watch_interval
# Failed sign-ins (API and dashboard) allowed per user name and per client address in one window.
OPTIO_LOGIN_MAX_FAILURES_PER_USER = 5
OPTIO_LOGIN_MAX_FAILURES_PER_ADDRESS = 20
OPTIO_LOGIN_FAILURE_WINDOW = 15 * 60  # seconds

# Production hardening; `manage.py check --deploy` is clean when DEBUG is off.
if not DEBUG:
    SESSION_COOKIE_SECURE = CONFIG.public_url.startswith("https://")
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
    SECURE_REFERRER_POLICY = "same-origin"
    if SESSION_COOKIE_SECURE:
        SECURE_SSL_REDIRECT = True
        # Load balancers probe health over plain HTTP inside the network.
        SECURE_REDIRECT_EXEMPT = [r"^api/health$"]
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
        SECURE_HSTS_SECONDS = 31536000
        SECURE_HSTS_INCLUDE_SUBDOMAINS = True
        SECURE_HSTS_PRELOAD = True
CSRF_TRUSTED_ORIGINS = [CONFIG.public_url]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"celery": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}
