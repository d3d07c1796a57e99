"""Settings of the example project; the part that matters here is ``CACHES``."""

SECRET_KEY = "example-only-not-secret"  # noqa: S105 - an example project's key
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]
ROOT_URLCONF = "shop.urls"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}  # the example needs no database
USE_TZ = True

# Every Django cache call (django.core.cache.cache, cache_page, the cache
# middleware) now goes to memokit. OPTIONS["BACKEND"] picks the memokit backend:
# "memory" here; "filesystem", "sqlite", "redis" or "memcached" in production.
CACHES = {
    "default": {
        "BACKEND": "memokit.contrib.django.MemokitCache",
        "LOCATION": "shop",
        "TIMEOUT": 300,
        "KEY_PREFIX": "shop",
        "OPTIONS": {"BACKEND": "memory", "MAX_ENTRIES": 10_000},
    },
}
