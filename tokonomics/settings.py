"""Tokonomics settings. The only module that reads os.environ (CONTRACT §5)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str) -> str:
    """A secret from NAME, or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    return os.environ.get(name, "")


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_secret("TOKONOMICS_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("TOKONOMICS_SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production-0123456789"  # noqa: S105 -- DEBUG only


def _encryption_key() -> bytes:
    raw = env_secret("TOKONOMICS_ENCRYPTION_KEY")
    if not raw:
        if not DEBUG:
            raise ImproperlyConfigured(
                "TOKONOMICS_ENCRYPTION_KEY must be set when DEBUG is off "
                "(32 random bytes, base64; `python manage.py generatekey` prints one)"
            )
        # Development only: stable across restarts so stored credentials stay readable.
        return hashlib.sha256(b"tokonomics-dev-encryption:" + SECRET_KEY.encode()).digest()
    return encryption_key_parse(raw)


def encryption_key_parse(raw: str) -> bytes:
    """32 bytes from base64 in the standard or the URL-safe alphabet (Fernet.generate_key() and many secret
    stores give the latter), padded or not."""
    text = raw.strip()
    if set(text) & set("+/") and set(text) & set("-_"):
        raise ImproperlyConfigured("TOKONOMICS_ENCRYPTION_KEY mixes the standard (+/) and URL-safe (-_) base64 "
                                   "alphabets: paste the key exactly as it was generated")
    text = text.translate(str.maketrans("-_", "+/"))
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(
            "TOKONOMICS_ENCRYPTION_KEY is not valid base64 (32 random bytes, standard or URL-safe alphabet; "
            "`python manage.py generatekey` prints one)"
        ) from None
    if len(key) != 32:
        raise ImproperlyConfigured(
            f"TOKONOMICS_ENCRYPTION_KEY must be base64 of 32 bytes, not {len(key)} "
            "(`python manage.py generatekey` prints one)"
        )
    return key


TOKONOMICS_ENCRYPTION_KEY: bytes = _encryption_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "ninja",  # serves the API docs' Swagger UI locally instead of from a CDN
    "template_partials",
    "billing",
    "proxy",
    "alerts",
    "tokonomics.config",  # applyconfig and seeddemo
    "tools",  # the seeding and benchmark commands (tools/management/commands)
]

# A proxy worker (tokonomics.proxy_asgi) loads only the apps whose models the proxy reads: the web
# app's admin, sessions, templates and REST API would cost each worker ~20 MB it never uses.
TOKONOMICS_PROCESS = env_str("TOKONOMICS_PROCESS", "all")
if TOKONOMICS_PROCESS not in {"all", "proxy"}:
    raise ImproperlyConfigured(f"TOKONOMICS_PROCESS={TOKONOMICS_PROCESS!r} is not one of: all, proxy")
if TOKONOMICS_PROCESS == "proxy":
    INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "billing", "proxy", "alerts"]

if TOKONOMICS_PROCESS == "all" and (DEBUG or env_bool("TOKONOMICS_DAPHNE", False)):
    # Daphne's runserver is the development server; production runs uvicorn, and leaving Daphne
    # (and Twisted with it) out saves each worker ~20 MB.
    INSTALLED_APPS.insert(0, "daphne")

MIDDLEWARE = [
    "tokonomics.web_access.web_access_log",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "billing.sso.session_scope.SessionScopeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

# Password sign-in throttling (django-axes): per username and per client address, each up to the limit
# of failures within the cool-off; a success resets the person's own count (billing.sso.login_throttle).
# The proxy process signs nobody in.
TOKONOMICS_LOGIN_FAILURE_LIMIT = env_int("TOKONOMICS_LOGIN_FAILURE_LIMIT", 10)
TOKONOMICS_LOGIN_COOLOFF_MINUTES = env_int("TOKONOMICS_LOGIN_COOLOFF_MINUTES", 15)
# How many reverse proxies of ours append to X-Forwarded-For; 0 (default) believes only the socket.
TOKONOMICS_TRUSTED_PROXY_COUNT = env_int("TOKONOMICS_TRUSTED_PROXY_COUNT", 0)
if TOKONOMICS_PROCESS == "all":
    INSTALLED_APPS.append("axes")
    MIDDLEWARE.append("axes.middleware.AxesMiddleware")  # last, as django-axes asks
    AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = TOKONOMICS_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=TOKONOMICS_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks
AXES_RESET_ON_SUCCESS = False  # it would also clear others' failures from the same address
AXES_USERNAME_CALLABLE = "billing.sso.login_throttle.login_username"
AXES_CLIENT_IP_CALLABLE = "billing.sso.login_throttle.client_ip"
AXES_LOCKOUT_CALLABLE = "billing.sso.login_throttle.lockout_response"
AXES_DISABLE_ACCESS_LOG = True  # failures are kept (admin → Axes); successful sign-ins need no table
AXES_VERBOSE = False

ROOT_URLCONF = "tokonomics.urls"
ASGI_APPLICATION = "tokonomics.asgi.application"

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
                "billing.accounts.context_processors.branding",
                "billing.accounts.context_processors.account_switcher",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'tokonomics.sqlite3'}"),
        # Under ASGI each request's sync code may run in a new thread: persistent connections would pile up.
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The run command puts web, proxy loader and worker on one file; WAL keeps readers off the writer's back.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
# A read replica of the primary (streaming replication): dashboards and the API's aggregates read the ledger
# there (tokonomics/db_router.py, docs/scaling.md). Under test it is the test database itself.
if DATABASE_REPLICA_URL := env_str("DATABASE_REPLICA_URL", ""):
    DATABASES["replica"] = dj_database_url.parse(DATABASE_REPLICA_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
                                                 conn_health_checks=True)
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["tokonomics.db_router.ReplicaRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
FORMS_URLFIELD_ASSUME_HTTPS = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "var" / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# redis+cluster://host:port[,host:port…]/ (or rediss+cluster://) names a Redis Cluster by some of its nodes.
REDIS_CLUSTER = REDIS_URL.partition("://")[0].lower() in ("redis+cluster", "rediss+cluster")

# Celery's Redis transport speaks to one server: a Redis Cluster cannot be its broker.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or ("" if REDIS_CLUSTER else REDIS_URL)
if not CELERY_BROKER_URL:
    raise ImproperlyConfigured(
        "REDIS_URL names a Redis Cluster, which Celery cannot use as its broker: set CELERY_BROKER_URL to a "
        "single Redis server (redis://host:port/db) or another broker Celery supports"
    )
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# The proxy (CONTRACT §1, §5)
TOKONOMICS_MAX_BODY_BYTES = env_int("TOKONOMICS_MAX_BODY_BYTES", 32 * 1024 * 1024)
TOKONOMICS_ALLOW_PRIVATE_URLS = env_bool("TOKONOMICS_ALLOW_PRIVATE_URLS", True)
TOKONOMICS_METRICS_TOKEN = env_secret("TOKONOMICS_METRICS_TOKEN")
TOKONOMICS_UPSTREAM_CONNECT_TIMEOUT = env_float("TOKONOMICS_UPSTREAM_CONNECT_TIMEOUT", 10.0)
TOKONOMICS_UPSTREAM_READ_TIMEOUT = env_float("TOKONOMICS_UPSTREAM_READ_TIMEOUT", 600.0)
TOKONOMICS_REDIS_TIMEOUT = env_float("TOKONOMICS_REDIS_TIMEOUT", 0.25)
TOKONOMICS_CONFIG_POLL_SECONDS = env_float("TOKONOMICS_CONFIG_POLL_SECONDS", 0.5)
# Where each proxy process spools the usage events it holds while Redis is unreachable (proxy/spool.py).
TOKONOMICS_SPOOL_DIR = env_str("TOKONOMICS_SPOOL_DIR", str(BASE_DIR / "var" / "spool"))
# Budget leases (proxy/leases.py, docs/performance.md): each proxy worker may hold this fraction of a hard
# budget's remaining room, shared among the workers serving the account, and admit calls against it
# without a Redis round trip. 0 turns leases off: every call reserves in Redis, as before leases.
TOKONOMICS_LEASE_FRACTION = env_float("TOKONOMICS_LEASE_FRACTION", 0.25)
# A lease a worker stops renewing (a dead process) gives its room back after this long.
TOKONOMICS_LEASE_TTL_SECONDS = env_float("TOKONOMICS_LEASE_TTL_SECONDS", 10.0)
# How often a worker settles its leased calls, sends their usage events and resizes its leases.
TOKONOMICS_LEASE_FLUSH_SECONDS = env_float("TOKONOMICS_LEASE_FLUSH_SECONDS", 0.1)
# A new proxy worker warms up before it reports ready (proxy/warmup.py), for at most this long, preloading
# this many of the newest keys (docs/scaling.md, "Cold start").
TOKONOMICS_WARMUP_SECONDS = env_float("TOKONOMICS_WARMUP_SECONDS", 5.0)
TOKONOMICS_WARMUP_KEYS = env_int("TOKONOMICS_WARMUP_KEYS", 1000)


def otlp_traces_endpoint(base: str, traces: str) -> str:
    """Where spans are sent (OTLP over http/protobuf), as OpenTelemetry's variables say it: the traces
    endpoint as given, else the base endpoint + /v1/traces; "" (tracing off) when neither is set."""
    url = traces or (base.rstrip("/") + "/v1/traces" if base else "")
    if url and not url.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"the OTLP endpoint {url!r} is not an http:// or https:// URL")
    return url


# OpenTelemetry traces of proxied calls (proxy/tracing.py): off unless an OTLP endpoint is named. The SDK
# itself reads its other standard variables (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION,
# _CERTIFICATE, OTEL_BSP_*, OTEL_RESOURCE_ATTRIBUTES), as OpenTelemetry documents them.
OTEL_TRACES_ENDPOINT = "" if env_bool("OTEL_SDK_DISABLED", False) else otlp_traces_endpoint(
    env_str("OTEL_EXPORTER_OTLP_ENDPOINT").strip(), env_str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").strip()
)
OTEL_SERVICE_NAME = env_str("OTEL_SERVICE_NAME", "tokonomics-proxy").strip() or "tokonomics-proxy"

# Content-Security-Policy (django-csp): scripts and styles from this site only — no inline script, no eval;
# the one inline <style> (the account's brand colour) carries the request's nonce. Images may also come
# from https (a white-label logo) and data: URLs.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:", "https:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
    },
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Load balancers and probes reach these over plain HTTP inside the network: a redirect would fail them.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    # The header the TLS-terminating balancer sets ("X-Forwarded-Proto: https"); empty when there is none,
    # so a client cannot pass a plain request off as https.
    _forwarded_proto = env_str("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto").strip()
    SECURE_PROXY_SSL_HEADER = (
        ("HTTP_" + _forwarded_proto.upper().replace("-", "_"), "https") if _forwarded_proto else None
    )
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
# Seconds. Every mail (alerts, invitations, domain confirmations) goes through the SMTP backend, which reads
# this: a stuck SMTP server must not hold a request, a row lock or a worker for ever.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 15)
if EMAIL_TIMEOUT <= 0:
    raise ImproperlyConfigured(f"EMAIL_TIMEOUT={EMAIL_TIMEOUT} must be a positive number of seconds")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Tokonomics <alerts@localhost>")

# `plain` (default) or `json`: one JSON object per line (tokonomics/log_format.py), the proxy's access line
# per call included. The servers' own loggers (uvicorn, Daphne) and Celery's worker write through the same
# handler then, so every line of a process's output parses.
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} must be plain or json")
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "daphne", "django.channels.server")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "tokonomics.log_format.JsonFormatter"},
    },
    "filters": {"secrets": {"()": "tokonomics.log_format.SecretsRedacted"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["secrets"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # One line per proxied call in JSON mode; off otherwise, where a call pays one level check for it.
        "proxy.access": {"level": "INFO" if LOG_FORMAT == "json" else "WARNING"},
        "web.access": {"level": "INFO" if LOG_FORMAT == "json" else "WARNING"},  # one line per page, likewise
        **({name: {"handlers": ["console"], "propagate": False} for name in _SERVER_LOGGERS}
           if LOG_FORMAT == "json" else {}),
    },
}
USAGE_INGEST_MAX_SECONDS = env_float("USAGE_INGEST_MAX_SECONDS", 5.0)
ALERT_RETRY_BASE_SECONDS = env_float("ALERT_RETRY_BASE_SECONDS", 30.0)
