"""Django settings for BioVLM Web, read from the environment.

With no variables set, the platform runs on one machine: SQLite in WAL mode, an embedded
Redis on a Unix socket, and files under ``var/media``. A lab server sets DATABASE_URL,
REDIS_URL, SECRET_KEY and ALLOWED_HOSTS (see docs/operations.md).
"""

import logging.config
import os
import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from biovlm_web import embedded_redis
from biovlm_web.env import env_bool, env_float, env_int, env_list, env_size, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("BIOVLM_VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    # `make demo` writes a random key here on first start.
    _secret_key_file = Path(env_str("SECRET_KEY_FILE", str(VAR_DIR / "secret_key")))
    if _secret_key_file.is_file():
        SECRET_KEY = _secret_key_file.read_text().strip()
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off. Set SECRET_KEY to a long random string, "
            "point SECRET_KEY_FILE at a file that holds one, or set DEBUG=1 for local development."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_rq",
    "django_vite",
    "channels",
    "biovlm_web.core",
    "biovlm_web.uploads",
    "biovlm_web.tomograms",
    "biovlm_web.comparisons",
    "biovlm_web.anomalies",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "biovlm_web.core.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "biovlm_web.core.middleware.ShareTokenHeaderGuardMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "biovlm_web.core.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "biovlm_web.urls"
ASGI_APPLICATION = "biovlm_web.asgi.application"
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

# --- Database -------------------------------------------------------------------------

SQLITE_BUSY_TIMEOUT_SECONDS = env_float("SQLITE_BUSY_TIMEOUT", 20.0, minimum=0)


SUPPORTED_DATABASE_SCHEMES = {"sqlite", "postgres", "postgresql", "pgsql"}


def _database_from_url(url: str | None) -> dict:
    if not url:
        path = VAR_DIR / "db.sqlite3"
        config = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}
    else:
        scheme = url.split(":", 1)[0].lower()
        if scheme not in SUPPORTED_DATABASE_SCHEMES:
            raise ImproperlyConfigured(
                f"DATABASE_URL uses the scheme {scheme!r}; use one of {', '.join(sorted(SUPPORTED_DATABASE_SCHEMES))}."
            )
        try:
            config = environ.Env.db_url_config(url)
        except Exception as error:
            raise ImproperlyConfigured(f"DATABASE_URL could not be parsed ({error}).") from error
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets an RQ worker process write job progress while the server reads. The busy
        # timeout and IMMEDIATE transactions make concurrent writers wait instead of failing.
        config["OPTIONS"] = {
            "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # A file-backed test database, so worker and server subprocesses in tests see it.
        config["TEST"] = {"NAME": str(Path(config["NAME"]).with_name("test-" + Path(config["NAME"]).name))}
    else:
        config["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
        config["CONN_HEALTH_CHECKS"] = True
    return config


DATABASES = {"default": _database_from_url(env_str("DATABASE_URL"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: RQ queues and the Channels layer ------------------------------------------

REDIS_URL = env_str("REDIS_URL")
REDIS_EMBEDDED = not REDIS_URL
if REDIS_EMBEDDED:
    REDIS_URL = embedded_redis.socket_url(VAR_DIR)

RQ_QUEUES = {
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": env_int("RQ_DEFAULT_TIMEOUT", 3600, minimum=1)},
    "gpu": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": env_int("RQ_GPU_TIMEOUT", 6 * 3600, minimum=1)},
}
RQ_SHOW_ADMIN_LINK = False

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 times out reads after 5 s by default, the same as channels-redis's
            # blocking pop, which dropped every idle websocket after about 6 s.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}],
            "prefix": env_str("CHANNELS_PREFIX", "biovlm"),
        },
    }
}

# --- Jobs -------------------------------------------------------------------------------

# A running job's worker writes a heartbeat this often; a job whose heartbeat is older than
# JOB_STALE_SECONDS is marked failed by the reaper.
JOB_HEARTBEAT_SECONDS = env_float("JOB_HEARTBEAT_SECONDS", 5.0, minimum=0.1)
JOB_STALE_SECONDS = env_float("JOB_STALE_SECONDS", 30.0, minimum=1.0)
JOB_PROGRESS_MIN_INTERVAL = env_float("JOB_PROGRESS_MIN_INTERVAL", 0.25, minimum=0.0)
JOB_LOG_MAX_LINES = env_int("JOB_LOG_MAX_LINES", 500, minimum=10)

# --- Models -----------------------------------------------------------------------------

# One source per role, from BIOVLM_MODEL_<ROLE> (see analysis/backends/spec.py for the syntax);
# roles left unset use analysis.backends.registry.DEFAULT_SOURCES.
from analysis.backends.registry import sources_from_environment  # noqa: E402

MODEL_SOURCES = sources_from_environment()
MODEL_ALLOW_DOWNLOADS = env_bool("BIOVLM_ALLOW_DOWNLOADS", False)
if not MODEL_ALLOW_DOWNLOADS:
    # huggingface_hub reads these once, at import, so they are set before any model code runs.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
MODEL_CACHE_DIR = Path(env_str("BIOVLM_MODEL_CACHE_DIR", str(VAR_DIR / "model-cache"))).resolve()
MODEL_DEVICE = env_str("BIOVLM_DEVICE")

# --- Files ------------------------------------------------------------------------------

MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media"))).resolve()
MEDIA_URL = "/media/"
UPLOAD_TEMP_DIR = Path(env_str("UPLOAD_TEMP_DIR", str(VAR_DIR / "partial-uploads"))).resolve()
UPLOAD_MAX_FILE_SIZE = env_size("UPLOAD_MAX_FILE_SIZE", 4 * 1024**3)
UPLOAD_CHUNK_SIZE = env_size("UPLOAD_CHUNK_SIZE", 8 * 1024**2)
# A chunk request may carry at most this much, so no single request can fill the disk.
UPLOAD_MAX_CHUNK_SIZE = env_size("UPLOAD_MAX_CHUNK_SIZE", 64 * 1024**2)
UPLOAD_MAX_IMAGE_PIXELS = env_int("UPLOAD_MAX_IMAGE_PIXELS", 400_000_000, minimum=1)
# Incomplete chunked uploads untouched for this long are deleted by `manage.py cleanup_uploads`.
UPLOAD_ABANDON_HOURS = env_float("UPLOAD_ABANDON_HOURS", 72.0, minimum=0.0)
FILE_UPLOAD_TEMP_DIR = str(UPLOAD_TEMP_DIR)
FILE_UPLOAD_PERMISSIONS = 0o640
# Form fields only; file contents are streamed to disk by the upload handlers.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024**2

STORAGE_BACKEND = env_str("STORAGE_BACKEND", "filesystem")
if STORAGE_BACKEND == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("S3_BUCKET", required=True),
            "endpoint_url": env_str("S3_ENDPOINT_URL"),
            "region_name": env_str("S3_REGION"),
            "access_key": env_str("S3_ACCESS_KEY_ID"),
            "secret_key": env_str("S3_SECRET_ACCESS_KEY"),
            "file_overwrite": False,
            "default_acl": None,
        },
    }
elif STORAGE_BACKEND == "filesystem":
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
else:
    raise ImproperlyConfigured(f"STORAGE_BACKEND={STORAGE_BACKEND!r} is not supported: use 'filesystem' or 's3'.")

STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Static files and the Vite build ----------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # plotly/plotly.min.js, from the pinned plotly package, for the comparison plots.
    "biovlm_web.comparisons.staticfiles.PlotlyFinder",
]
# Serve straight from STATICFILES_DIRS in development and tests, without collectstatic.
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", True)
if WHITENOISE_USE_FINDERS:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

DJANGO_VITE = {
    "default": {
        "dev_mode": env_bool("VITE_DEV_MODE", False),
        "manifest_path": BASE_DIR / "static" / "dist" / ".vite" / "manifest.json",
        "static_url_prefix": "dist",
    }
}

# --- Auth, sessions, security -----------------------------------------------------------

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Share links carry their token in the path, so no other site may see it in a Referer.
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# HTTPS: behind a TLS-terminating proxy (nginx sets X-Forwarded-Proto), plain HTTP requests are
# redirected to HTTPS, the HSTS header makes browsers use HTTPS only, and cookies are sent over
# HTTPS only. With DEBUG off, a server named by a host other than loopback must either sit behind
# such a proxy or say explicitly that it serves plain HTTP (ALLOW_PLAIN_HTTP=1).
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
ALLOW_PLAIN_HTTP = env_bool("ALLOW_PLAIN_HTTP", False)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
_public_hosts = sorted(set(ALLOWED_HOSTS) - LOOPBACK_HOSTS)
if not DEBUG and not BEHIND_TLS_PROXY and not ALLOW_PLAIN_HTTP and _public_hosts:
    raise ImproperlyConfigured(
        f"ALLOWED_HOSTS names {', '.join(_public_hosts)} but BEHIND_TLS_PROXY is off, so passwords and session "
        "cookies would cross the network in plain HTTP. Put the server behind an HTTPS proxy and set "
        "BEHIND_TLS_PROXY=1, or set ALLOW_PLAIN_HTTP=1 to serve plain HTTP anyway."
    )
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", BEHIND_TLS_PROXY)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if BEHIND_TLS_PROXY else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", BEHIND_TLS_PROXY)

# Sent on every response by biovlm_web.core.middleware.ContentSecurityPolicyMiddleware; {nonce}
# becomes a fresh per-request nonce. Scripts run only from this origin or with the nonce.
# 'wasm-unsafe-eval' lets the uploader compile hash-wasm's WebAssembly SHA-256; it does not allow
# eval() of JavaScript. Styles allow 'unsafe-inline' because Plotly and the Swagger UI insert
# <style> elements at run time.
CONTENT_SECURITY_POLICY = env_str(
    "CONTENT_SECURITY_POLICY",
    "; ".join(
        [
            "default-src 'self'",
            "script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "media-src 'self' blob:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    ),
)

# Unknown share tokens allowed per client IP address within the window (seconds) before 429.
SHARE_TOKEN_MAX_FAILURES = env_int("SHARE_TOKEN_MAX_FAILURES", 20, minimum=1)
SHARE_TOKEN_FAILURE_WINDOW = env_int("SHARE_TOKEN_FAILURE_WINDOW", 600, minimum=1)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- API --------------------------------------------------------------------------------

REST_FRAMEWORK = {
    # Token first: DRF takes the WWW-Authenticate header from the first class, so anonymous
    # requests get 401 (sign in) rather than 403 (forbidden).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "biovlm_web.core.api.exceptions.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "BioVLM Web API",
    "DESCRIPTION": "Projects, datasets, uploads, jobs, share links and cryo-ET tomograms of BioVLM Web.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Logging ----------------------------------------------------------------------------

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING_CONFIG = None
# WhiteNoise serves static files with a synchronous iterator, and Django warns about that on
# every static request under ASGI; the files are small, so the warning is only noise.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")
logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "root": {"handlers": ["console"], "level": LOG_LEVEL},
        "loggers": {
            "daphne": {"level": "WARNING"},
            "rq.worker": {"level": "INFO"},
            "django.request": {"level": "ERROR"},
        },
    }
)

BIOVLM_VERSION = "0.1.0"
