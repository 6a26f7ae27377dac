"""Settings for the image gateway, read from the environment with safe defaults.

With no environment at all the gateway runs embedded: SQLite under var/, no Redis,
Celery tasks inline, every model served by the built-in `local` provider.
"""

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from celery.schedules import crontab
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from gateway.core.env import env_bool, env_choice, env_decimal, env_int, env_list, env_networks, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept under var/.

    Keeping it in a file lets every worker process (and every restart) sign and
    verify image URLs with the same key without shipping a known default.
    """
    configured = env_str("SECRET_KEY")
    if configured:
        return configured
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


# The production switch (docker/Dockerfile and the Kubernetes manifests set it): secure cookies, HSTS and the
# redirect to HTTPS default to on, and SECRET_KEY must come from the environment. Off by default, because
# `make run` and the test suite serve plain HTTP with DEBUG off (pytest-django forces DEBUG=False).
PRODUCTION = env_bool("PRODUCTION", False)
if PRODUCTION and not env_str("SECRET_KEY"):
    # A key generated per container would differ between pods, and their signed image URLs with it.
    raise ImproperlyConfigured("PRODUCTION is on: set SECRET_KEY, the same on every web and worker process")
SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off when PRODUCTION is on: it shows settings and tracebacks to anyone")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_htmx",
    # django-csp: its system checks (the middleware is in MIDDLEWARE).
    "csp",
    "accounts",
    "billing",
    "providers",
    "gateway",
]

MIDDLEWARE = [
    "gateway.core.middleware.RequestIdMiddleware",
    # One line per Django request (ACCESS_LOG); the image endpoints log their own (gateway.pipeline.observe).
    "gateway.core.middleware.AccessLogMiddleware",
    # Outside CommonMiddleware, so that a missing slash is still redirected before a 404 is reshaped.
    "gateway.core.middleware.ApiErrorShapeMiddleware",
    # A view that cannot reach the database answers 503 (its process_exception), not a 500 and a traceback.
    "gateway.core.middleware.DatabaseUnavailableMiddleware",
    "gateway.core.middleware.NulParameterMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
]

# --- Transport and browser security -------------------------------------------
# Each defaults to on in production (PRODUCTION above) and can be set on its own. The image endpoints, which
# bypass Django's middleware, apply the same redirect and HSTS header (gateway/core/https.py).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
# Probes (Docker HEALTHCHECK, Kubernetes) call over plain HTTP inside the network; a redirect would fail them.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PRODUCTION)
# Opt-in, as Django names the header (HTTP_X_FORWARDED_PROTO): trusted to mean HTTPS when it says "https".
# Only behind a proxy that always overwrites it, else any client could claim HTTPS.
SECURE_PROXY_SSL_HEADER = (env_str("SECURE_PROXY_SSL_HEADER"), "https") if env_str("SECURE_PROXY_SSL_HEADER") else None
SECURE_REFERRER_POLICY = env_str("SECURE_REFERRER_POLICY", "same-origin")
# Content-Security-Policy (django-csp): enforce, report-only or off. On everywhere, not only in production, so
# that the dashboard's browser tests run under the policy production sends. Scripts and style sheets come only
# from our own static files (no inline <script>, <style> or onclick: static/js/dashboard.js binds the buttons);
# inline style *attributes* stay allowed (style-src-attr) for the width of meters and the colour of swatches.
# (Read into private names: django-csp treats any CSP_* setting as its retired format and fails its check.)
_csp_mode = env_choice("CSP_MODE", "enforce", ("enforce", "report-only", "off"))
_csp_report_uri = env_str("CSP_REPORT_URI")
_csp_policy: dict[str, Any] = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "style-src-attr": [UNSAFE_INLINE],
        # data: for the empty favicon in base.html.
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
if _csp_report_uri:
    _csp_policy["DIRECTIVES"]["report-uri"] = _csp_report_uri
CONTENT_SECURITY_POLICY = _csp_policy if _csp_mode == "enforce" else None
CONTENT_SECURITY_POLICY_REPORT_ONLY = _csp_policy if _csp_mode == "report-only" else None

ROOT_URLCONF = "gateway.urls"
ASGI_APPLICATION = "gateway.asgi.application"
WSGI_APPLICATION = "gateway.wsgi.application"

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

# --- Database -------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'gateway.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
# Seconds a step waits for a free pooled connection (a burst of requests queues for them; with PostgreSQL down,
# Django's routes answer 503 `database_unavailable` after this wait), and for a new connection to be made
# (the image endpoints answer 503 at once when it is refused, within this when the network is silent).
DB_POOL_TIMEOUT = env_int("DB_POOL_TIMEOUT", 10)
DB_CONNECT_TIMEOUT = env_int("DB_CONNECT_TIMEOUT", 2)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = DB_CONNECT_TIMEOUT
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_POOL", True):
    # ORM steps off the hot path's statements (db_step) check a connection out and give
    # it back before the request waits on a provider; a pool makes that give-back cheap.
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": env_int("DB_POOL_MIN", 1),
        "max_size": env_int("DB_POOL_MAX", 10),
        "timeout": DB_POOL_TIMEOUT,
    }
    # The pool checks a connection before handing it out (psycopg's `check`): one the server dropped while
    # idle (PostgreSQL restarted) is replaced instead of failing the first request after an outage.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# The hot path's own statements on PostgreSQL: async (asyncpg) connections per worker
# process, at most DB_HOT_POOL_MAX in use at once, each statement prepared once per
# connection. Set DB_HOT_PREPARE=false behind a pooler that cannot keep prepared statements.
DB_HOT_ASYNC = env_bool("DB_HOT_ASYNC", True)
DB_HOT_POOL_MAX = env_int("DB_HOT_POOL_MAX", 5)
DB_HOT_PREPARE = env_bool("DB_HOT_PREPARE", True)
DB_HOT_IDLE_SECONDS = env_int("DB_HOT_IDLE_SECONDS", 300)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
    # The test database is a file beside the real one, with the same options. Django's default,
    # a shared-cache in-memory database, fails concurrent writers at once ("database table is
    # locked") where the file waits out the busy timeout, as the embedded gateway does.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_gateway.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache and Celery ---------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
# Enqueueing runs on a request's thread once its transaction commits: with the broker down it gives up
# after one quick retry (not kombu's default of retrying for seconds) and the work waits for redelivery.
CELERY_BROKER_TRANSPORT_OPTIONS = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict = {
    "hosted-images-delete-expired": {"task": "providers.tasks.hosted_images_delete_expired", "schedule": 3600.0},
    "spend-reservations-sweep": {"task": "billing.tasks.spend_reservations_sweep", "schedule": 60.0},
    "spend-alerts-redeliver": {"task": "billing.tasks.spend_alerts_redeliver", "schedule": 60.0},
    # Image jobs: fail those a dead worker left (the sweep above released their holds), delete expired ones.
    "image-jobs-clean": {"task": "gateway.tasks.image_jobs_clean", "schedule": 60.0},
}

# --- Auth, i18n, static ---------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Where collectstatic puts them (the image does at build time, outside the VAR_DIR volume); the gateway itself
# serves static files from the source folders (gateway/asgi.py), so this is for a proxy or CDN in front.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"
# Hosted images go to any S3-compatible bucket when S3_BUCKET is set, else under MEDIA_ROOT.
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if env_str("S3_BUCKET"):
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("S3_BUCKET"),
            "endpoint_url": env_str("S3_ENDPOINT_URL") or None,
            "region_name": env_str("S3_REGION") or None,
            "access_key": env_str("S3_ACCESS_KEY_ID") or None,
            "secret_key": env_str("S3_SECRET_ACCESS_KEY") or None,
            "location": env_str("S3_PREFIX"),
            # The gateway signs its own URLs; the bucket stays private.
            "default_acl": "private",
            "querystring_auth": True,
        },
    }

# Request bodies above this answer 413 before any parsing.
MAX_REQUEST_BODY_BYTES = 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# `POST /v1/images/edits` (gateway/pipeline/uploads.py): a multipart form streamed to a temporary directory,
# never held in memory. Each limit answers 413 (400 for too many images) as soon as it is crossed.
EDIT_MAX_FILE_BYTES = env_int("EDIT_MAX_FILE_BYTES", 50 * 1024 * 1024)  # each image or mask; OpenAI's own limit
EDIT_MAX_BODY_BYTES = env_int("EDIT_MAX_BODY_BYTES", 256 * 1024 * 1024)  # the whole form
EDIT_MAX_IMAGES = env_int("EDIT_MAX_IMAGES", 16)  # as many as OpenAI takes
EDIT_MAX_FIELD_BYTES = env_int("EDIT_MAX_FIELD_BYTES", 64 * 1024)  # each text field (the prompt is the long one)
# Where the per-request directories go; empty means the system's temporary directory ($TMPDIR).
EDIT_UPLOAD_DIR = env_str("EDIT_UPLOAD_DIR")

# --- Hostile clients (docs/operations.md, "Hostile clients") ---------------
# Failed authentications (a key unknown, revoked, expired or malformed) one client address may make per minute
# before its requests are refused with 429 whatever key they send, until the minute ends (accounts/throttle.py).
# 0 turns the throttle off.
AUTH_FAILURES_PER_MINUTE = env_int("AUTH_FAILURES_PER_MINUTE", 60)
# How many reverse proxies in front of the gateway append to X-Forwarded-For: the client's address is the one
# the outermost saw. 0 (the default) ignores the header, which a client can write.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
# A request body (an image request's JSON, an edit's upload) must arrive within this many seconds of its first
# read, else 408 and the connection is closed (slow clients would hold a connection for ever).
BODY_READ_TIMEOUT_SECONDS = env_int("BODY_READ_TIMEOUT_SECONDS", 30)
# A request's headers must be whole within this many seconds of the connection opening (or of the request's
# first byte on a kept-alive connection), and within MAX_HEADER_BYTES, else 408 / 431 and the connection is
# closed: gateway/server.py, the HTTP protocol `make serve` runs uvicorn with.
HEADER_READ_TIMEOUT_SECONDS = env_int("HEADER_READ_TIMEOUT_SECONDS", 10)
MAX_HEADER_BYTES = env_int("MAX_HEADER_BYTES", 64 * 1024)
# Dashboard (and admin) sign-ins lock out after this many wrong passwords for one username from one address,
# for LOGIN_LOCKOUT_MINUTES (django-axes; `manage.py axes_reset_username <name>` unlocks at once).
INSTALLED_APPS += ["axes"]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]  # last, as axes asks: it answers a locked-out sign-in
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
# Per username and address together: a stranger cannot lock a user out from elsewhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
# The same client address as the API's throttle (TRUSTED_PROXY_COUNT applies).
AXES_CLIENT_IP_CALLABLE = "gateway.core.auth.client_address_of_request"

# --- Gateway behaviour ----------------------------------------------------
IMAGE_URL_TTL_SECONDS = env_int("IMAGE_URL_TTL_SECONDS", 3600)
# Absolute base for signed image URLs; empty means "the host the client called".
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL").rstrip("/")
LOCAL_PROVIDER_DELAY_MS = env_int("LOCAL_PROVIDER_DELAY_MS", 0)
PROVIDER_TIMEOUT_SECONDS = env_int("PROVIDER_TIMEOUT_SECONDS", 120)
# Upstream connections one worker process holds open at once, every provider together. A request in flight
# holds one for the provider's whole answer, so this is a worker's ceiling of requests in flight: past it a
# request waits for a connection (uvicorn spreads connections unevenly over workers, so keep it well above
# the clients divided by the workers). Each one is a socket: the process's open-file limit must allow it.
UPSTREAM_MAX_CONNECTIONS = env_int("UPSTREAM_MAX_CONNECTIONS", 4000)
# An idle upstream connection is dropped after this long. Below the 5 s idle timeout common to HTTP servers
# (uvicorn, gunicorn, Node), so a pooled connection is never reused just as the server closes it (a 502).
UPSTREAM_KEEPALIVE_SECONDS = env_int("UPSTREAM_KEEPALIVE_SECONDS", 4)
# One deadline per request for everything sent upstream (attempts, retries, fallbacks, polls): a hung provider
# answers 504 after this long, not after (retries + 1) x PROVIDER_TIMEOUT_SECONDS. Async jobs get their own,
# longer one; both stay below SPEND_RESERVATION_TIMEOUT_SECONDS, or the sweeper would release a live hold.
REQUEST_DEADLINE_SECONDS = env_int("REQUEST_DEADLINE_SECONDS", 150)
IMAGE_JOB_DEADLINE_SECONDS = env_int("IMAGE_JOB_DEADLINE_SECONDS", 300)
# Serve models whose provider has no credentials with the local renderer: on by
# default only embedded (no Redis, SQLite); in production such a model answers 503.
LOCAL_PROVIDER_FALLBACK = env_bool(
    "LOCAL_PROVIDER_FALLBACK", not REDIS_URL and DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
)
# The one retry loop for upstream calls (providers/retry.py) and the per-provider circuit breaker.
PROVIDER_MAX_RETRIES = env_int("PROVIDER_MAX_RETRIES", 2)
PROVIDER_BACKOFF_BASE_MS = env_int("PROVIDER_BACKOFF_BASE_MS", 500)
PROVIDER_BACKOFF_CAP_MS = env_int("PROVIDER_BACKOFF_CAP_MS", 8000)
PROVIDER_RETRY_AFTER_MAX_SECONDS = env_int("PROVIDER_RETRY_AFTER_MAX_SECONDS", 20)
PROVIDER_BREAKER_THRESHOLD = env_int("PROVIDER_BREAKER_THRESHOLD", 5)
PROVIDER_BREAKER_COOLDOWN_SECONDS = env_int("PROVIDER_BREAKER_COOLDOWN_SECONDS", 30)
BFL_POLL_INTERVAL_MS = env_int("BFL_POLL_INTERVAL_MS", 1500)
BFL_POLL_DEADLINE_SECONDS = env_int("BFL_POLL_DEADLINE_SECONDS", 120)
# Hosted images (and the response cache's entries) are deleted this long after they were made.
IMAGE_RETENTION_SECONDS = env_int("IMAGE_RETENTION_SECONDS", 25 * 3600)
API_KEY_LAST_USED_RESOLUTION_SECONDS = env_int("API_KEY_LAST_USED_RESOLUTION_SECONDS", 60)

# --- Governance: rate limits, spend caps, idempotency, alerts -------------
# When Redis is unreachable: "open" falls back to a per-process limiter (and logs), "closed" answers 503.
RATE_LIMIT_ON_REDIS_FAILURE = env_choice("RATE_LIMIT_ON_REDIS_FAILURE", "open", ("open", "closed"))
# How many server processes serve this gateway on this host (uvicorn reads the same variable for --workers).
WEB_CONCURRENCY = env_int("WEB_CONCURRENCY", 1)
# Counting without Redis, each process takes 1/RATE_LIMIT_PROCESSES of every limit, so that together they admit
# the limit, not the limit once per process. Several hosts (pods): set it to hosts x workers (the most there are).
RATE_LIMIT_PROCESSES = env_int("RATE_LIMIT_PROCESSES", WEB_CONCURRENCY)
# A spend reservation older than this belongs to a crashed worker and is released by the sweeper.
SPEND_RESERVATION_TIMEOUT_SECONDS = env_int("SPEND_RESERVATION_TIMEOUT_SECONDS", 600)
# The web process sweeps too (gateway.sweeper), so a deployment without Celery beat (`make serve`) still
# releases a crashed worker's reservations: every this many seconds, one process at a time. 0 turns it off.
SPEND_RESERVATION_SWEEP_SECONDS = env_int("SPEND_RESERVATION_SWEEP_SECONDS", 60)
# How many times the periodic redelivery tries an alert whose queued delivery never ran or gave up.
ALERT_REDELIVERY_MAX_ATTEMPTS = env_int("ALERT_REDELIVERY_MAX_ATTEMPTS", 8)
# An organization's in-flight slot older than this is a crashed worker's and is dropped (gateway.pipeline.concurrency);
# keep it above the longest a request may last.
CONCURRENCY_SLOT_SECONDS = env_int("CONCURRENCY_SLOT_SECONDS", 600)
SPEND_ALERT_THRESHOLDS = [int(t) for t in env_list("SPEND_ALERT_THRESHOLDS", "80,100")]
# Networks (CIDRs, comma-separated) that alert webhooks and job callbacks may reach although they are internal
# (loopback, link-local, private...); empty: public addresses only (gateway.core.webhook_address).
WEBHOOK_ALLOWED_NETWORKS = env_networks("WEBHOOK_ALLOWED_NETWORKS")
IDEMPOTENCY_TTL_SECONDS = env_int("IDEMPOTENCY_TTL_SECONDS", 24 * 3600)
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "imagegate@localhost")

# Annotated because entries of mixed types are added further down (the finance block).
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}

LOG_LEVEL = env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
# json (one object per line, with each record's extra fields: what a log pipeline indexes) or plain (readable);
# json by default with PostgreSQL and DEBUG off (`make serve`, the images), plain embedded (`make run`, its setup
# commands) and in debug.
LOG_FORMAT = env_choice(
    "LOG_FORMAT", "plain" if DEBUG or DATABASES["default"]["ENGINE"].endswith("sqlite3") else "json", ("json", "plain")
)
# The access log: one line per Django request (method, path without its query, status, latency, request id).
ACCESS_LOG = env_bool("ACCESS_LOG", not DEBUG)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        # With PostgreSQL down the pool warns at every reconnection attempt; each request refused logs its own line.
        "psycopg.pool": {"level": "ERROR"},
        # django-axes announces itself at every start; its lockouts are warnings and still logged.
        "axes": {"level": "WARNING"},
    },
}
# Bearer token that /metrics (Prometheus) requires; unset, /metrics answers 404. Multiprocess mode is
# PROMETHEUS_MULTIPROC_DIR, read by prometheus-client itself (docs/operations.md, "Observability").
METRICS_TOKEN = env_str("METRICS_TOKEN")

# --- Finance: exports, rollups, usage API ---------------------------------
INSTALLED_APPS += ["drf_spectacular", "drf_spectacular_sidecar"]
# Exports over this many rows run as a Celery job instead of streaming at once.
USAGE_EXPORT_ASYNC_THRESHOLD = env_int("USAGE_EXPORT_ASYNC_THRESHOLD", 100_000)
USAGE_EXPORT_TTL_DAYS = env_int("USAGE_EXPORT_TTL_DAYS", 7)
CELERY_BEAT_SCHEDULE |= {
    "usage-rollup-recent": {"task": "billing.tasks.usage_rollup_recent", "schedule": 3600},
    "usage-reconcile-recent": {"task": "billing.tasks.usage_reconcile_recent", "schedule": 6 * 3600},
    "usage-exports-expire": {"task": "billing.tasks.usage_exports_expire", "schedule": 3600},
    "model-catalog-check": {"task": "billing.tasks.model_catalog_check", "schedule": 24 * 3600},
}
# The daily FOCUS drop (billing.usage.focus): yesterday's file per organization, into a local folder or S3.
if env_str("FOCUS_DROP_S3_BUCKET"):
    STORAGES["focus"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("FOCUS_DROP_S3_BUCKET"),
            "endpoint_url": env_str("FOCUS_DROP_S3_ENDPOINT_URL") or None,
            "region_name": env_str("FOCUS_DROP_S3_REGION") or None,
            "access_key": env_str("FOCUS_DROP_S3_ACCESS_KEY_ID") or None,
            "secret_key": env_str("FOCUS_DROP_S3_SECRET_ACCESS_KEY") or None,
            "location": env_str("FOCUS_DROP_S3_PREFIX", "focus"),
            "default_acl": "private",
        },
    }
else:
    STORAGES["focus"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": env_str("FOCUS_DROP_DIR", str(VAR_DIR / "focus"))},
    }
# Also a FOCUS CSV beside each day's Parquet file.
FOCUS_DROP_CSV = env_bool("FOCUS_DROP_CSV", False)
CELERY_BEAT_SCHEDULE["focus-drop-daily"] = {
    "task": "billing.tasks.focus_drop_yesterday",
    "schedule": crontab(hour=1, minute=0),
}
REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "drf_spectacular.openapi.AutoSchema"
SPECTACULAR_SETTINGS = {
    "TITLE": "imagegate API",
    "DESCRIPTION": "The image endpoints (OpenAI's Images API under /v1/, the flat flavour under /api/), their jobs, "
    "the models, and the usage API: your organization's line items and totals. Authenticated with an API key.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The routes that are not DRF views (the image endpoints, jobs, models) and the error shapes, written once.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "gateway.openapi.image_endpoints_add"],
}

# --- Invoices ----------------------------------------------------------------
# The issuer's details the first time an invoice is issued (one InvoiceIssuer row is created from them);
# afterwards staff edit them at /staff/invoicing/, and these settings no longer apply.
INVOICE_ISSUER_NAME = env_str("INVOICE_ISSUER_NAME", "imagegate")
INVOICE_ISSUER_ADDRESS = env_str("INVOICE_ISSUER_ADDRESS")
INVOICE_ISSUER_EMAIL = env_str("INVOICE_ISSUER_EMAIL")
INVOICE_ISSUER_TAX_ID = env_str("INVOICE_ISSUER_TAX_ID")
INVOICE_TAX_LABEL = env_str("INVOICE_TAX_LABEL", "Tax")
# Percent: 20 for 20 %. An organization's billing details may set its own rate.
INVOICE_TAX_RATE = env_decimal("INVOICE_TAX_RATE", "0")
INVOICE_NUMBER_PREFIX = env_str("INVOICE_NUMBER_PREFIX", "INV")
