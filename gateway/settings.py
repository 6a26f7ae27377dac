"""Settings for the image gateway, read from the environment with safe defaults.

With no environment at all the gateway runs embedded: SQLite under var/, no Redis,
Celery tasks inline, every model served by the built-in `local` provider.
"""

import secrets
from pathlib import Path
from typing import Any

import dj_database_url
from celery.schedules import crontab

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


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
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
    "accounts",
    "billing",
    "providers",
    "gateway",
]

MIDDLEWARE = [
    "gateway.core.middleware.RequestIdMiddleware",
    # Outside CommonMiddleware, so that a missing slash is still redirected before a 404 is reshaped.
    "gateway.core.middleware.ApiErrorShapeMiddleware",
    "gateway.core.middleware.NulParameterMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

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
DB_POOL_TIMEOUT = env_int("DB_POOL_TIMEOUT", 10)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_POOL", True):
    # ORM steps off the hot path's statements (db_step) check a connection out and give
    # it back before the request waits on a provider; a pool makes that give-back cheap.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DB_POOL_MIN", 1),
        "max_size": env_int("DB_POOL_MAX", 10),
        "timeout": DB_POOL_TIMEOUT,
    }
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
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict = {
    "hosted-images-delete-expired": {"task": "providers.tasks.hosted_images_delete_expired", "schedule": 3600.0},
    "spend-reservations-sweep": {"task": "billing.tasks.spend_reservations_sweep", "schedule": 60.0},
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
STATIC_ROOT = VAR_DIR / "staticfiles"
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

# --- Gateway behaviour ----------------------------------------------------
IMAGE_URL_TTL_SECONDS = env_int("IMAGE_URL_TTL_SECONDS", 3600)
# Absolute base for signed image URLs; empty means "the host the client called".
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL").rstrip("/")
LOCAL_PROVIDER_DELAY_MS = env_int("LOCAL_PROVIDER_DELAY_MS", 0)
PROVIDER_TIMEOUT_SECONDS = env_int("PROVIDER_TIMEOUT_SECONDS", 120)
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
# A spend reservation older than this belongs to a crashed worker and is released by the sweeper.
SPEND_RESERVATION_TIMEOUT_SECONDS = env_int("SPEND_RESERVATION_TIMEOUT_SECONDS", 600)
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
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
}

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
