"""Django settings of the DRF baseline; every connection detail comes from ``BENCH_*``."""

from __future__ import annotations

import os
from datetime import timedelta

_pg = {
    "ENGINE": "django.db.backends.postgresql",  # psycopg 3
    "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
    "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
    "USER": os.environ.get("BENCH_PG_USER", "postgres"),
    "PASSWORD": os.environ.get("BENCH_PG_PASSWORD", ""),
    # Persistent connections, as a production deployment runs (Kanvaro keeps a pool too).
    "CONN_MAX_AGE": None,
}

SECRET_KEY = os.environ.get("BENCH_DRF_SECRET_KEY", "")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "bench.baselines.drf.urls"
WSGI_APPLICATION = "bench.baselines.drf.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "bench.baselines.drf",
]
# An API-only stack: no sessions, CSRF or messages (the clients send bearer tokens).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

DATABASES = {
    "default": {**_pg, "NAME": os.environ.get("BENCH_DRF_AUTH_DATABASE", "bench_django")},
    "kanvaro": {**_pg, "NAME": os.environ.get("BENCH_DRF_TASK_DATABASE", "kanvaro")},
}
DATABASE_ROUTERS = ["bench.baselines.drf.models.KanvaroTablesRouter"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}
# SimpleJWT's defaults (HS256, user loaded from auth_user on every request) except the
# lifetime: one token must outlast a whole run; the lifetime costs nothing per request.
SIMPLE_JWT = {"ACCESS_TOKEN_LIFETIME": timedelta(hours=2)}
