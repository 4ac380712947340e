"""Settings, all from the environment (CRUCIBLE_*), with embedded defaults for a fresh machine.

CRUCIBLE_PRODUCTION=1 turns the unsafe defaults into start-up errors.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from crucible_site.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CRUCIBLE_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

PRODUCTION = env_bool("CRUCIBLE_PRODUCTION", False)
DEBUG = env_bool("CRUCIBLE_DEBUG", False)


def _secret_key() -> str:
    key = env_str("CRUCIBLE_SECRET_KEY")
    if key:
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("CRUCIBLE_SECRET_KEY (or CRUCIBLE_SECRET_KEY_FILE) must be set in production")
    # Embedded default: a random key made once per checkout, never a literal in the source.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("CRUCIBLE_DEBUG must be off in production")

ALLOWED_HOSTS = env_list("CRUCIBLE_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CRUCIBLE_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "evaluations.apps.CrucibleAdminConfig",  # the Django admin, for the admin role
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rules",
    "rest_framework",
    "channels",
    "evaluations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "evaluations.unavailable.ServiceUnavailableMiddleware",  # 503, not 500, while the database or Redis is down
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "crucible_site.urls"
ASGI_APPLICATION = "crucible_site.asgi.application"
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
                "evaluations.accounts.context.site_context",  # signup_enabled, can.<rule>
            ],
        },
    },
]

# Embedded default: SQLite under var/. CI and production pass a PostgreSQL URL.
DATABASE_URL = env_str("CRUCIBLE_DATABASE_URL", f"sqlite:///{VAR_DIR / 'crucible.sqlite3'}")
# Connections close at the end of each request: under ASGI every request runs in a thread of its
# own, and a persistent connection per thread piles up until the server refuses more.
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the worker write at once: WAL + immediate transactions + a busy timeout.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # A file, not :memory:, so the end-to-end tests' daphne and worker processes share it; one per
    # pytest process, so two test sessions in one checkout do not delete each other's database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-crucible-{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTHENTICATION_BACKENDS = [
    "rules.permissions.ObjectPermissionBackend",  # evaluations/accounts/permissions.py
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Self-registration (/signup/ makes researchers). Off: accounts come from admins (invitations).
CRUCIBLE_ALLOW_SIGNUP = env_bool("CRUCIBLE_ALLOW_SIGNUP", False)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "run-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Only needed for `collectstatic` in production; whitenoise serves static/ directly otherwise.
STATIC_ROOT = env_str("CRUCIBLE_STATIC_ROOT") or None
WHITENOISE_USE_FINDERS = True  # serve straight from static/ without a collectstatic step

# Run output and metric samples, appended by workers with byte offsets, read by the web side.
# A FileSystemStorage: several hosts share it as a common volume.
CRUCIBLE_LOGS_DIR = Path(env_str("CRUCIBLE_LOGS_DIR", str(VAR_DIR / "logs")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "logs": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(CRUCIBLE_LOGS_DIR)},
    },
}

# Request bodies: code is capped at 1 MiB; the body may carry a little more (multipart framing).
CRUCIBLE_MAX_CODE_BYTES = env_int("CRUCIBLE_MAX_CODE_BYTES", 1024 * 1024)
# Project archives: the upload itself, and what it may unpack to.
CRUCIBLE_MAX_UPLOAD_BYTES = env_int("CRUCIBLE_MAX_UPLOAD_BYTES", 10 * 1024 * 1024)
CRUCIBLE_MAX_PROJECT_BYTES = env_int("CRUCIBLE_MAX_PROJECT_BYTES", 32 * 1024 * 1024)
CRUCIBLE_MAX_PROJECT_FILES = env_int("CRUCIBLE_MAX_PROJECT_FILES", 1000)
CRUCIBLE_MAX_STDIN_BYTES = env_int("CRUCIBLE_MAX_STDIN_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = CRUCIBLE_MAX_CODE_BYTES * 3
FILE_UPLOAD_MAX_MEMORY_SIZE = CRUCIBLE_MAX_CODE_BYTES * 3

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "evaluations.api.auth.ApiTokenAuthentication",  # hashed tokens, evaluations/accounts/tokens.py
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "evaluations.api.throttling.ApiRateThrottle",
        "evaluations.api.throttling.ApiWriteRateThrottle",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "evaluations.api.parsers.SafeJSONParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "evaluations.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# Redis: Celery broker, the Channels layer and the cache (API rate-limit counters, shared by
# every web process).
REDIS_URL = env_str("CRUCIBLE_REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CRUCIBLE_CACHE_PREFIX", "crucible"),
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}


def _rate(name: str, default: str) -> str | None:
    """'<n>/<second|minute|hour|day>' (DRF reads the first letter of the unit), or 'off'."""
    raw = env_str(name, default).strip().lower()
    if raw in ("off", "none", "unlimited"):
        return None
    number, _, unit = raw.partition("/")
    if not number.isdigit() or unit not in ("s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day"):
        raise ImproperlyConfigured(f"{name} must look like 120/min (or 10/s, 1000/hour, 5000/day, off), got {raw!r}")
    return raw


# API rate limits per token (per user for browser sessions); writes (submissions, re-runs,
# cancels) have their own, lower limit on top. Over a limit the API answers 429 + Retry-After.
CRUCIBLE_API_RATE = _rate("CRUCIBLE_API_RATE", "120/min")
CRUCIBLE_API_WRITE_RATE = _rate("CRUCIBLE_API_WRITE_RATE", "30/min")
# How many reverse proxies in front of us append to X-Forwarded-For. 0: the header is ignored
# and the client address (audit log, rate limits of anonymous callers) is REMOTE_ADDR.
CRUCIBLE_TRUSTED_PROXIES = env_int("CRUCIBLE_TRUSTED_PROXIES", 0)
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "runs"
CELERY_TASK_ROUTES = {"evaluations.*": {"queue": "runs"}}
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A run goes on while the broker is away (its lease and result go to the database, not the broker).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# The worker's start-up checks, recovery, heartbeat and shutdown (signal handlers).
CELERY_IMPORTS = ["evaluations.runs.worker"]

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # socket_timeout keeps idle websockets alive with redis-py 8; capacity avoids silent drops.
            # After a Redis restart pooled connections are dead: check them before use and retry.
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": 10,
                    "health_check_interval": 5,
                    "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), 5),
                    "retry_on_error": [RedisConnectionError, RedisTimeoutError],
                }
            ],
            "capacity": 5000,
            "expiry": 30,
        },
    }
}

# Sandbox.
CRUCIBLE_SANDBOX_ENGINE = env_str("CRUCIBLE_SANDBOX_ENGINE", "runsc")
if PRODUCTION and CRUCIBLE_SANDBOX_ENGINE == "subprocess":
    raise ImproperlyConfigured("the subprocess engine is not a sandbox and is refused in production")
CRUCIBLE_RUNSC_PATH = env_str("CRUCIBLE_RUNSC_PATH", "runsc")
# For CRUCIBLE_SANDBOX_ENGINE=docker: the dockerd to use (python -m sandbox.docker.daemon starts one).
CRUCIBLE_DOCKER_URL = env_str("CRUCIBLE_DOCKER_URL", "unix:///var/run/docker.sock")
CRUCIBLE_IMAGES_DIR = Path(env_str("CRUCIBLE_IMAGES_DIR", str(VAR_DIR / "images")))
CRUCIBLE_SANDBOX_STATE_DIR = Path(env_str("CRUCIBLE_SANDBOX_STATE_DIR", str(VAR_DIR / "sandboxes")))
CRUCIBLE_DEFAULT_WALL_SECONDS = env_float("CRUCIBLE_DEFAULT_WALL_SECONDS", 10.0)
CRUCIBLE_MAX_WALL_SECONDS = env_float("CRUCIBLE_MAX_WALL_SECONDS", 300.0)
CRUCIBLE_DEFAULT_MEMORY_MB = env_int("CRUCIBLE_DEFAULT_MEMORY_MB", 256)
CRUCIBLE_MAX_MEMORY_MB = env_int("CRUCIBLE_MAX_MEMORY_MB", 2048)
CRUCIBLE_OUTPUT_LIMIT_BYTES = env_int("CRUCIBLE_OUTPUT_LIMIT_BYTES", 1024 * 1024)
# Celery redelivers an unacked task after this long; it must exceed the longest run.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(CRUCIBLE_MAX_WALL_SECONDS) + 3600}
# With Redis down, sending a run's message fails fast; the reconciler sends it once Redis is back.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}

# The run lifecycle (docs/lifecycle.md). A running run whose worker has not renewed its lease for
# this long lost its worker; the reconciler, every CRUCIBLE_RECONCILE_SECONDS, ends it.
CRUCIBLE_RUN_LEASE_SECONDS = env_float("CRUCIBLE_RUN_LEASE_SECONDS", 30.0)
CRUCIBLE_RECONCILE_SECONDS = env_float("CRUCIBLE_RECONCILE_SECONDS", 5.0)
# A stopping worker (SIGTERM, Ctrl-C) lets running runs finish for this long, then ends them.
CRUCIBLE_STOP_GRACE_SECONDS = env_float("CRUCIBLE_STOP_GRACE_SECONDS", 30.0)
# A worker retries storing a run's result this long, then hands it to the reconciler through Redis.
CRUCIBLE_FINAL_WRITE_RETRY_SECONDS = env_float("CRUCIBLE_FINAL_WRITE_RETRY_SECONDS", 60.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("CRUCIBLE_LOG_LEVEL", "INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}
