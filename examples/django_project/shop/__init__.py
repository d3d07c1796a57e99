"""A minimal Django project whose cache is memokit (see settings.CACHES)."""
