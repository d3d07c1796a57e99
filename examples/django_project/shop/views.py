"""Views that cache through Django's cache API, which memokit serves."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache, caches
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import cache_page

import memokit

builds: dict[str, int] = {}
"""How often each report was computed; the tests read it to see cache hits."""


def index(request: HttpRequest) -> HttpResponse:
    """What `manage.py runserver` shows first: the example's pages."""
    links = "".join(
        f'<li><a href="{url}">{url}</a>: {what}</li>'
        for url, what in (
            ("/report/north/", "computed once a minute, through django.core.cache"),
            ("/async-report/north/", "the same entry, from an async view"),
            ("/visits/", "an atomic counter"),
            ("/page/", "a whole response cached by cache_page"),
            ("/prices/tea/", "a memokit @cached function in the cache CACHES configures"),
        )
    )
    return HttpResponse(f"<h1>memokit in a Django project</h1><ul>{links}</ul>")


def build_report(region: str) -> dict[str, Any]:
    """Stand-in for an expensive computation (a slow query, a remote call)."""
    builds[region] = builds.get(region, 0) + 1
    return {"region": region, "total": sum(ord(c) for c in region)}


def report(request: HttpRequest, region: str) -> JsonResponse:
    """Computed once per region and minute; later requests read memokit."""
    data = cache.get_or_set(f"report:{region}", lambda: build_report(region), timeout=60)
    return JsonResponse(data)


async def async_report(request: HttpRequest, region: str) -> JsonResponse:
    """The same from an async view, through memokit's own async methods."""
    data = await cache.aget_or_set(f"report:{region}", lambda: build_report(region), timeout=60)
    return JsonResponse(data)


def visits(request: HttpRequest) -> JsonResponse:
    """An atomic counter that never expires."""
    cache.add("visits", 0, timeout=None)
    return JsonResponse({"visits": cache.incr("visits")})


@cache_page(30)
def page(request: HttpRequest) -> HttpResponse:
    """A whole response cached by Django's cache_page, stored by memokit."""
    builds["page"] = builds.get("page", 0) + 1
    return HttpResponse(f"rendered {builds['page']} time(s)")


@memokit.cached(timeout=60, cache=caches["default"])
def price_list(category: str, currency: str = "EUR") -> dict[str, Any]:
    """Memoised by memokit's @cached in the cache that Django's CACHES configures."""
    builds[f"prices:{category}"] = builds.get(f"prices:{category}", 0) + 1
    return {"category": category, "currency": currency, "items": [f"{category}-1"]}


def prices(request: HttpRequest, category: str) -> JsonResponse:
    """A view whose data comes from a @cached function."""
    return JsonResponse(price_list(category, currency=request.GET.get("currency", "EUR")))
