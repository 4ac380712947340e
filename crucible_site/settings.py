"""Settings, all from the environment (CRUCIBLE_*), with embedded defaults for a fresh machine.

CRUCIBLE_PRODUCTION=1 turns the unsafe defaults into start-up errors.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from crucible_site.env import env_bool, env_float, env_int, env_list, env_str, generated_secret
from sandbox.engine import CPU_WEIGHTS

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
    return generated_secret(VAR_DIR / "secret_key")


SECRET_KEY = _secret_key()
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("CRUCIBLE_DEBUG must be off in production")

ALLOWED_HOSTS = env_list("CRUCIBLE_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CRUCIBLE_CSRF_TRUSTED_ORIGINS", [])


def _run_command_origins() -> list[str]:
    """The origins of the run command's URL (CRUCIBLE_HOST:CRUCIBLE_PORT, as `make run` sets them)."""
    host, port = env_str("CRUCIBLE_HOST", "127.0.0.1"), env_str("CRUCIBLE_PORT", "8000")
    if host in ("0.0.0.0", "::", "127.0.0.1", "localhost", "::1"):  # noqa: S104 - names, not a bind
        hosts = ["127.0.0.1", "localhost", "[::1]"]  # one machine, any name for it
    else:
        hosts = [f"[{host}]" if ":" in host else host]
    return [f"http://{name}:{port}" for name in hosts]


# Where browsers may open websockets from: scheme://host[:port], compared exactly (a wildcard in
# ALLOWED_HOSTS lets no origin in). Behind a TLS proxy: the public https:// origin.
CRUCIBLE_ALLOWED_ORIGINS = env_list("CRUCIBLE_ALLOWED_ORIGINS", CSRF_TRUSTED_ORIGINS or _run_command_origins())

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
    "drf_spectacular",  # the OpenAPI schema of the API (evaluations/api/openapi.py)
    "channels",
    "evaluations",
    "axes",  # failed-login lockouts (evaluations/accounts/login_limits.py)
]

MIDDLEWARE = [
    "evaluations.monitoring.logging.RequestLogMiddleware",  # request id, log context, one line per request
    "django.middleware.security.SecurityMiddleware",
    "evaluations.content_security.ContentSecurityPolicyMiddleware",  # script-src 'self', no inline code
    "evaluations.static_compression.StaticGZipMiddleware",  # gzip for WhiteNoise's static files only
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "evaluations.monitoring.request_metrics.RequestMetricsMiddleware",  # latency by route, for /metrics
    "evaluations.unavailable.ServiceUnavailableMiddleware",  # 503, not 500, while the database or Redis is down
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a locked-out login into a 429 (last, as axes asks)
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
# The web process (daphne loads these settings while importing asgi.py) borrows PostgreSQL
# connections from a pool instead: opening one per request was a tenth of its CPU under load. Checked
# on borrow: a restarted server heals. A worker's pool children make pools of their own after the
# fork (evaluations/runs/worker.py), of DB_WORKER_POOL.
DB_POOL_SIZE = env_int("CRUCIBLE_DB_POOL_SIZE", 10)
DB_WORKER_POOL = {
    "min_size": 1,
    "max_size": 8,  # a run's task, its watch and its output flusher each hold one while they work
    "timeout": 2,
    "max_idle": 60,
}
if (
    DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    and DB_POOL_SIZE > 0
    and "crucible_site.asgi" in sys.modules
):
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = "crucible-web"
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": 2,
        "max_size": DB_POOL_SIZE,
        # None free (all borrowed, or the server is down and none can be made): wait this long, then
        # the request answers 503.
        "timeout": 2,
        "max_idle": 60,
    }
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
    "evaluations.accounts.login_limits.LoginLockoutBackend",  # first: refuses locked-out logins
    "rules.permissions.ObjectPermissionBackend",  # evaluations/accounts/permissions.py
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Self-registration (/signup/ makes researchers). Off: accounts come from admins (invitations).
CRUCIBLE_ALLOW_SIGNUP = env_bool("CRUCIBLE_ALLOW_SIGNUP", False)
# Failed logins (the login page and the admin's): after this many for one username, or from one
# client address, logins from there are refused (429) for CRUCIBLE_LOGIN_LOCKOUT_SECONDS after the
# last failure. Counted in the cache (Redis) by django-axes, so every web process agrees.
CRUCIBLE_LOGIN_FAILURE_LIMIT = env_int("CRUCIBLE_LOGIN_FAILURE_LIMIT", 10)
CRUCIBLE_LOGIN_LOCKOUT_SECONDS = env_int("CRUCIBLE_LOGIN_LOCKOUT_SECONDS", 15 * 60)
if CRUCIBLE_LOGIN_FAILURE_LIMIT < 1 or CRUCIBLE_LOGIN_LOCKOUT_SECONDS < 1:
    raise ImproperlyConfigured("CRUCIBLE_LOGIN_FAILURE_LIMIT and CRUCIBLE_LOGIN_LOCKOUT_SECONDS must be at least 1")
AXES_HANDLER = "evaluations.accounts.login_limits.LoginLockoutCacheHandler"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks
AXES_FAILURE_LIMIT = "evaluations.accounts.login_limits.failure_limit"
AXES_COOLOFF_TIME = "evaluations.accounts.login_limits.lockout_time"
AXES_LOCKOUT_CALLABLE = "evaluations.accounts.login_limits.lockout_response"
AXES_CLIENT_IP_CALLABLE = "evaluations.accounts.audit.client_ip"  # honours CRUCIBLE_TRUSTED_PROXIES
# Attempts while locked out do not push the end of the lockout further away.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_ENABLE_ADMIN = False  # the audit log records logins, failures and lockouts
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False
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

# Run output and metric samples are rows in the database (evaluations/runs/logstore.py): web and
# workers on different hosts share no disk.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Retention: the output, metric samples and uploaded archives of runs that ended more than this many
# days ago are deleted (0: kept forever), by the reconciler every CRUCIBLE_RETENTION_EVERY_SECONDS,
# at most CRUCIBLE_RETENTION_BATCH runs a pass (evaluations/runs/retention.py).
CRUCIBLE_RETENTION_DAYS = env_float("CRUCIBLE_RETENTION_DAYS", 30.0)
CRUCIBLE_RETENTION_EVERY_SECONDS = env_float("CRUCIBLE_RETENTION_EVERY_SECONDS", 3600.0)
CRUCIBLE_RETENTION_BATCH = env_int("CRUCIBLE_RETENTION_BATCH", 500)

# Request bodies: code is capped at 1 MiB; the body may carry a little more (multipart framing).
CRUCIBLE_MAX_CODE_BYTES = env_int("CRUCIBLE_MAX_CODE_BYTES", 1024 * 1024)
# Project archives: the upload itself, and what it may unpack to.
CRUCIBLE_MAX_UPLOAD_BYTES = env_int("CRUCIBLE_MAX_UPLOAD_BYTES", 10 * 1024 * 1024)
CRUCIBLE_MAX_PROJECT_BYTES = env_int("CRUCIBLE_MAX_PROJECT_BYTES", 32 * 1024 * 1024)
CRUCIBLE_MAX_PROJECT_FILES = env_int("CRUCIBLE_MAX_PROJECT_FILES", 1000)
CRUCIBLE_MAX_STDIN_BYTES = env_int("CRUCIBLE_MAX_STDIN_BYTES", 1024 * 1024)
# A batch runs one submission over inputs x configurations: at most this many runs (evaluations/batches/).
CRUCIBLE_MAX_BATCH_RUNS = env_int("CRUCIBLE_MAX_BATCH_RUNS", 1000)
DATA_UPLOAD_MAX_MEMORY_SIZE = CRUCIBLE_MAX_CODE_BYTES * 3
FILE_UPLOAD_MAX_MEMORY_SIZE = CRUCIBLE_MAX_CODE_BYTES * 3
# The web server (crucible_site/web.py) answers 413 to a body over this before reading it: the
# largest upload (or form) plus stdin and the form's own fields and framing.
CRUCIBLE_MAX_REQUEST_BYTES = env_int(
    "CRUCIBLE_MAX_REQUEST_BYTES",
    max(CRUCIBLE_MAX_UPLOAD_BYTES, DATA_UPLOAD_MAX_MEMORY_SIZE) + CRUCIBLE_MAX_STDIN_BYTES + 64 * 1024,
)

# Behind a reverse proxy that ends TLS and sets X-Forwarded-Proto (README, "Behind a TLS proxy"): requests it
# marks https count as secure, HSTS is sent, cookies and invitation links are https only.
CRUCIBLE_BEHIND_TLS_PROXY = env_bool("CRUCIBLE_BEHIND_TLS_PROXY", False)
if CRUCIBLE_BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("CRUCIBLE_HSTS_SECONDS", 365 * 24 * 3600)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = PRODUCTION or CRUCIBLE_BEHIND_TLS_PROXY
CSRF_COOKIE_SECURE = PRODUCTION or CRUCIBLE_BEHIND_TLS_PROXY
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"  # run pages' URLs stay on this site

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
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Crucible API",
    "DESCRIPTION": "Submit Python code to run in a gVisor sandbox, follow its runs and read their output.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],  # the schema is no secret
    "COMPONENT_SPLIT_REQUEST": True,  # uploads are binary in requests, runs have read-only fields
    "COMPONENT_SPLIT_PATCH": False,  # PATCH bodies are checked as whole ones
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
    "PREPROCESSING_HOOKS": ["evaluations.api.openapi.only_the_rest_api"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "evaluations.api.openapi.add_links",
        "evaluations.api.openapi.strict_bodies",
    ],
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
# Webhook tries have a queue of their own: in the runs queue they would wait behind every run's message.
CELERY_TASK_ROUTES = {"evaluations.webhook_deliver": {"queue": "webhooks"}, "evaluations.*": {"queue": "runs"}}
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A run goes on while the broker is away (its lease and result go to the database, not the broker).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# The worker's start-up checks, recovery, heartbeat and shutdown (signal handlers).
CELERY_IMPORTS = ["evaluations.runs.worker"]
# Celery's Django fixup closes a pool child's database pool after every task unless told to reuse
# it: it does so every this many tasks. worker.py returns the task's connection after each task.
CELERY_DB_REUSE_MAX = 500

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
# Sandboxes each worker process keeps booted for its next runs (runsc engine; 0: every run boots).
CRUCIBLE_SANDBOX_POOL_SIZE = env_int("CRUCIBLE_SANDBOX_POOL_SIZE", 2)
# Pooled sandboxes import common modules ahead of their run (docs/sandbox.md, "Pooled sandboxes").
CRUCIBLE_SANDBOX_POOL_PRELOAD = env_bool("CRUCIBLE_SANDBOX_POOL_PRELOAD", True)
# All sandboxes of a host together, against each process outside them, for the CPU scheduler
# (cgroup v2's cpu.weight scale: a process weighs 100): under load the web and the database go first.
CRUCIBLE_SANDBOXES_CPU_WEIGHT = env_int("CRUCIBLE_SANDBOXES_CPU_WEIGHT", 10)
if CRUCIBLE_SANDBOXES_CPU_WEIGHT not in CPU_WEIGHTS:
    raise ImproperlyConfigured("CRUCIBLE_SANDBOXES_CPU_WEIGHT must be 1 to 10000 (cgroup v2's cpu.weight scale)")
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
# Webhooks (evaluations/webhooks/, docs/webhooks.md): tries per run end, the wait before the second
# (each next one 3x longer), the time a try may take, and how much of an answer is read. Loopback,
# link-local and private addresses are refused unless CRUCIBLE_WEBHOOK_ALLOW_PRIVATE is on.
CRUCIBLE_WEBHOOK_TRIES = env_int("CRUCIBLE_WEBHOOK_TRIES", 5)
CRUCIBLE_WEBHOOK_BACKOFF_SECONDS = env_float("CRUCIBLE_WEBHOOK_BACKOFF_SECONDS", 30.0)
CRUCIBLE_WEBHOOK_TIMEOUT_SECONDS = env_float("CRUCIBLE_WEBHOOK_TIMEOUT_SECONDS", 10.0)
CRUCIBLE_WEBHOOK_MAX_RESPONSE_BYTES = env_int("CRUCIBLE_WEBHOOK_MAX_RESPONSE_BYTES", 64 * 1024)
CRUCIBLE_WEBHOOK_ALLOW_PRIVATE = env_bool("CRUCIBLE_WEBHOOK_ALLOW_PRIVATE", False)
# The site's address as its users reach it: the links in a webhook's body start with it.
CRUCIBLE_SITE_URL = env_str("CRUCIBLE_SITE_URL", "http://127.0.0.1:8000")
# Whose run a worker with a free slot starts: "fair" takes turns across users (evaluations/runs/
# scheduling.py); "fifo" starts the run its message names, for comparison (bench/fair.py).
CRUCIBLE_SCHEDULER = env_str("CRUCIBLE_SCHEDULER", "fair")
if CRUCIBLE_SCHEDULER not in ("fair", "fifo"):
    raise ImproperlyConfigured(f"CRUCIBLE_SCHEDULER must be fair or fifo, got {CRUCIBLE_SCHEDULER!r}")
CRUCIBLE_RECONCILE_SECONDS = env_float("CRUCIBLE_RECONCILE_SECONDS", 5.0)
# A stopping worker (SIGTERM, Ctrl-C) lets running runs finish for this long, then ends them.
CRUCIBLE_STOP_GRACE_SECONDS = env_float("CRUCIBLE_STOP_GRACE_SECONDS", 30.0)
# A worker retries storing a run's result this long, then hands it to the reconciler through Redis.
CRUCIBLE_FINAL_WRITE_RETRY_SECONDS = env_float("CRUCIBLE_FINAL_WRITE_RETRY_SECONDS", 60.0)

# Prometheus /metrics (docs/monitoring.md): admins' API tokens may scrape it, and so may these client
# addresses or networks (e.g. 10.0.0.5,10.1.0.0/16; none by default). Processes record their metrics
# in files under CRUCIBLE_METRICS_DIR, one directory per process group.
CRUCIBLE_METRICS_ALLOWED_ADDRESSES = env_list("CRUCIBLE_METRICS_ALLOWED_ADDRESSES", [])
CRUCIBLE_METRICS_DIR = Path(env_str("CRUCIBLE_METRICS_DIR", str(VAR_DIR / "metrics")))

# Logs: one JSON object per line (production's default) or text lines for a person; each line
# carries the run, user and request or task it is about (evaluations/monitoring/logging.py).
CRUCIBLE_LOG_FORMAT = env_str("CRUCIBLE_LOG_FORMAT", "json" if PRODUCTION else "text").strip().lower()
if CRUCIBLE_LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"CRUCIBLE_LOG_FORMAT must be json or text, got {CRUCIBLE_LOG_FORMAT!r}")
LOGGING_CONFIG = "evaluations.monitoring.logging.configure_logging"  # dictConfig, and warnings as lines
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "evaluations.monitoring.logging.ContextFilter"}},
    "formatters": {
        "json": {"()": "evaluations.monitoring.logging.JsonFormatter"},
        "text": {"()": "evaluations.monitoring.logging.TextFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": CRUCIBLE_LOG_FORMAT, "filters": ["context"]}
    },
    "root": {"handlers": ["console"], "level": env_str("CRUCIBLE_LOG_LEVEL", "INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}
