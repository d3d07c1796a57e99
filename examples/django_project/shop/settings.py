"""Settings of the example project; the part that matters here is ``CACHES``."""

SECRET_KEY = "example-only-not-secret"  # noqa: S105 - an example project's key
DEBUG = False
# DEBUG is False, so Django serves only these hosts: the addresses `manage.py runserver`
# answers on (127.0.0.1, its default, and localhost) and the test client's "testserver".
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]
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
