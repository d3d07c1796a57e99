"""The example project through Django's test client: ``python manage.py test``."""

from __future__ import annotations

from django.core.cache import cache, caches
from django.test import SimpleTestCase

import memokit
from memokit.contrib.django import MemokitCache

from . import views


class CachedViewsTests(SimpleTestCase):
    def setUp(self) -> None:
        cache.clear()
        views.builds.clear()

    def test_index_lists_the_pages(self) -> None:
        response = self.client.get("/", headers={"host": "127.0.0.1:8000"})  # runserver's
        self.assertContains(response, '<a href="/prices/tea/">')

    def test_django_cache_is_memokit(self) -> None:
        self.assertIsInstance(caches["default"], MemokitCache)
        self.assertIsInstance(cache.memokit, memokit.MemoryCache)
        self.assertEqual(cache.make_key("k"), "shop:1:k")

    def test_report_is_computed_once(self) -> None:
        first = self.client.get("/report/north/")
        second = self.client.get("/report/north/")
        self.assertEqual(first.json(), {"region": "north", "total": 555})
        self.assertEqual(second.json(), first.json())
        self.assertEqual(views.builds, {"north": 1})
        self.client.get("/report/south/")
        self.assertEqual(views.builds, {"north": 1, "south": 1})

    def test_async_view_shares_the_entry(self) -> None:
        self.client.get("/report/east/")
        response = self.client.get("/async-report/east/")
        self.assertEqual(response.json()["region"], "east")
        self.assertEqual(views.builds, {"east": 1})

    def test_counter(self) -> None:
        self.assertEqual(self.client.get("/visits/").json(), {"visits": 1})
        self.assertEqual(self.client.get("/visits/").json(), {"visits": 2})
        self.assertEqual(cache.get("visits"), 2)

    def test_cache_page_stores_the_response_in_memokit(self) -> None:
        first = self.client.get("/page/")
        second = self.client.get("/page/")
        self.assertEqual(first.content, b"rendered 1 time(s)")
        self.assertEqual(second.content, b"rendered 1 time(s)")
        cache.clear()
        self.assertEqual(self.client.get("/page/").content, b"rendered 2 time(s)")

    def test_cached_function_in_a_view(self) -> None:
        first = self.client.get("/prices/tea/")
        second = self.client.get("/prices/tea/?currency=EUR")  # the default: the same key
        self.assertEqual(first.json(), second.json())
        self.assertEqual(views.builds, {"prices:tea": 1})
        self.assertEqual(self.client.get("/prices/tea/?currency=USD").json()["currency"], "USD")
        self.assertEqual(views.builds, {"prices:tea": 2})
        self.assertIs(views.price_list.cache, cache.memokit)
