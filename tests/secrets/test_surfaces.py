"""Every place a location or an option can surface shows no secret, whatever its characters.

One test per way of configuring a secret; each walks the same list of surfaces
(``SURFACES`` below) against real servers: a port with nothing listening, the
fault proxy resetting connections, a server refusing the password.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

import memokit
from memokit import BackendError, ImproperlyConfigured
from memokit.faults import FaultProxy
from memokit.testing import isolated_cache

pytestmark = pytest.mark.server

PIECES = ("Qx7k", "Wv3p")
SECRETS = {
    "at": "Qx7k@Wv3p@",
    "colon": "Qx7k:Wv3p",
    "slash": "Qx7k/Wv3p",
    "percent": "Qx7k%Wv3p",
    "percent-escape": "Qx7k%40Wv3p",
    "hash": "Qx7k#Wv3p",
    "question": "Qx7k?Wv3p",
    "non-ascii": "Qx7kéŁ✓Wv3p",
}
# The surfaces each configuration is checked on; a test fails if one is missing.
SURFACES = {
    "repr",
    "location",
    "get error",
    "set_many error",
    "incr error",
    "async get error",
    "breaker log",
    "warnings",
    "cache_info and the decorated repr",
    "config error",
    "Django adapter repr",
    "Django adapter error",
}


def _leaks(text: str, secret: str) -> list[str]:
    extra = "".join(c for c in secret if not c.isascii())
    return [piece for piece in [*PIECES, extra] if piece and piece in text]


def _chain(exc: BaseException) -> str:
    """Every message of an exception's chain, as a traceback shows them (without the
    source lines, which are the tests' own code)."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        parts += traceback.format_exception_only(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return "".join(parts)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def reset_proxy() -> Iterator[FaultProxy]:
    """A fault proxy that resets every connection, in front of a port nobody listens on."""
    with FaultProxy("127.0.0.1", _closed_port()) as proxy:
        proxy.set_faults(reset=True)
        yield proxy


def _settings(kind: str, secret: str, address: str) -> dict[str, Any]:
    """CACHES settings carrying ``secret`` the way ``kind`` names."""
    encoded = quote(secret, safe="")
    if kind == "url-encoded":
        return {"LOCATION": f"redis://app:{encoded}@{address}/0"}
    if kind == "url-raw":
        return {"LOCATION": f"redis://app:{secret}@{address}/0"}
    if kind == "token":
        return {"LOCATION": f"redis://{encoded}@{address}/0"}
    if kind == "query":
        return {"LOCATION": f"redis://{address}/0?password={encoded}"}
    if kind == "options":
        return {"LOCATION": f"redis://{address}/0", "OPTIONS": {"password": secret}}
    raise AssertionError(kind)


def _surfaces(settings: dict[str, Any], caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    """What each surface shows for a Redis cache built from ``settings``."""
    shown: dict[str, str] = {}
    cache = memokit.create_cache({"BACKEND": "redis", **settings})
    try:
        shown["repr"] = repr(cache)
        shown["location"] = cache.location
        with pytest.raises(BackendError) as raised:
            cache.get("k")
        shown["get error"] = _chain(raised.value)
        with pytest.raises(BackendError) as raised:
            cache.set_many({"a": 1, "b": 2})
        shown["set_many error"] = _chain(raised.value)
        with pytest.raises(BackendError) as raised:
            cache.incr("n")
        shown["incr error"] = _chain(raised.value)
        with pytest.raises(BackendError) as raised:
            asyncio.run(cache.aget("k"))
        shown["async get error"] = _chain(raised.value)

        @memokit.cached(cache=cache)
        def double(x: int) -> int:
            return 2 * x

        with (
            caplog.at_level(logging.DEBUG, logger="memokit"),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            assert double(2) == 4
            assert double(3) == 6
        shown["breaker log"] = caplog.text + "".join(
            _chain(r.exc_info[1]) for r in caplog.records if r.exc_info and r.exc_info[1]
        )
        assert "failed" in shown["breaker log"], "the backend failure was not logged"
        shown["warnings"] = "\n".join(str(w.message) for w in caught) or "(none)"
        shown["cache_info and the decorated repr"] = f"{double.cache_info()} {double!r}"
    finally:
        cache.close()

    bad = {**settings, "OPTIONS": {**settings.get("OPTIONS", {}), "socket_timeout": 0}}
    with pytest.raises(ImproperlyConfigured) as refused:
        memokit.create_cache({"BACKEND": "redis", **bad})
    shown["config error"] = _chain(refused.value)

    pytest.importorskip("django", reason="the Django adapter needs Django")
    from django.core.exceptions import ImproperlyConfigured as DjangoImproperlyConfigured

    from memokit.contrib.django import MemokitCache

    params = {"OPTIONS": {"BACKEND": "redis", **settings.get("OPTIONS", {})}}
    adapter = MemokitCache(settings["LOCATION"], params)
    try:
        shown["Django adapter repr"] = repr(adapter)
    finally:
        adapter.memokit.close()
    params["OPTIONS"]["no_such_option"] = 1
    with pytest.raises(DjangoImproperlyConfigured) as django_refused:
        MemokitCache(settings["LOCATION"], params)
    shown["Django adapter error"] = _chain(django_refused.value)
    return shown


KINDS = ["url-encoded", "url-raw", "token", "query", "options"]
CASES = [
    pytest.param(kind, secret, id=f"{kind}-{name}")
    for kind in KINDS
    for name, secret in SECRETS.items()
    # A raw '/', '?' or '#' ends the address: refused at once (test_unreadable_...).
    if not (kind == "url-raw" and any(c in secret for c in "/?#"))
]


@pytest.mark.parametrize(("kind", "secret"), CASES)
@pytest.mark.parametrize("where", ["nothing listening", "proxy resets"])
def test_no_surface_shows_the_secret(
    kind: str,
    secret: str,
    where: str,
    reset_proxy: FaultProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    address = f"127.0.0.1:{_closed_port()}" if where == "nothing listening" else reset_proxy.url()
    shown = _surfaces(_settings(kind, secret, address), caplog)  # a new cache: a new breaker
    assert set(shown) == SURFACES
    for surface, text in shown.items():
        assert not _leaks(text, secret), f"{surface} shows the secret:\n{text}"


@pytest.mark.parametrize("secret", ["Qx7k/Wv3p", "Qx7k?Wv3p", "Qx7k#Wv3p", "Qx7k@Wv3p/x"])
def test_an_unreadable_url_is_refused_without_quoting_the_secret(secret: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="percent-encoded") as raised:
        memokit.create_cache({"BACKEND": "redis", "LOCATION": f"redis://app:{secret}@h:1/0"})
    assert not _leaks(_chain(raised.value), secret), _chain(raised.value)


@pytest.mark.parametrize("secret", ["Qx7k;Wv3p", "Qx7k,Wv3p", "Qx7k Wv3p", "Qx7k\tWv3p"])
@pytest.mark.parametrize("listed", [False, True], ids=["str", "list"])
@pytest.mark.parametrize(
    "template", ["redis://app:{}@h:1/0", "redis://h:1/0?password={}"], ids=["userinfo", "query"]
)
def test_a_raw_separator_or_blank_in_a_password_is_refused_without_quoting_it(
    secret: str, listed: bool, template: str
) -> None:
    # A ';' or ',' splits a str LOCATION into servers, and neither it nor a blank can
    # stand in a URL's password for masking: they showed the password, or half of it.
    url = template.format(secret)
    with pytest.raises(ImproperlyConfigured, match="percent-encoded") as raised:
        memokit.create_cache({"BACKEND": "redis", "LOCATION": [url] if listed else url})
    assert not _leaks(_chain(raised.value), secret), _chain(raised.value)


def test_a_password_the_server_does_not_expect_is_not_shown(redis_server: Any) -> None:
    # The session server has no user "app": redis-py's AUTH error must not quote the password.
    for settings in (
        {
            "LOCATION": f"redis://app:{quote('Qx7k@Wv3p', safe='')}@{redis_server.host}:"
            f"{redis_server.port}/0"
        },
        {
            "LOCATION": f"{redis_server.url}/0",
            "OPTIONS": {"username": "app", "password": "Qx7k@Wv3p"},
        },
    ):
        cache = memokit.create_cache({"BACKEND": "redis", **settings})
        try:
            with pytest.raises(BackendError) as raised:
                cache.get("k")
        finally:
            cache.close()
        assert not _leaks(_chain(raised.value), "Qx7k@Wv3p"), _chain(raised.value)


@pytest.mark.parametrize(
    "settings",
    [
        {"BACKEND": "redis", "LOCATION": ["redis://:Qx7k@Wv3p@h:1", 5]},
        {"BACKEND": "redis", "LOCATION": "redis://h:1", "OPTIONS": [("password", "Qx7kWv3p")]},
        {"BACKEND": "redis", "LOCATION": "redis://:Qx7kWv3p@[::1"},
        {"BACKEND": "redis", "LOCATION": "redis://h:1;app:Qx7kWv3p@h:2"},  # no scheme
        {"BACKEND": "memcached", "LOCATION": "app:Qx7k@Wv3p@127.0.0.1:11211"},
        # LOCATION splits servers at ';' and ','; the piece before held a part.
        {"BACKEND": "memcached", "LOCATION": "app:Qx7k;Wv3p@127.0.0.1:11211"},
        {"BACKEND": "memcached", "LOCATION": "h:1,app:Qx7k,Wv3p@127.0.0.1:11211"},
        {"BACKEND": "memcached", "LOCATION": "127.0.0.1:11211", "OPTIONS": ["token=Qx7kWv3p"]},
        {"BACKEND": "memory", "OPTIONS": [("SECRET", "Qx7k" * 8), ("OLD_SECRETS", ["Wv3p"])]},
        {"BACKEND": "sqlite", "LOCATION": ":memory:", "OPTIONS": {"API_KEY": "Qx7kWv3p", "x": 1}},
    ],
    ids=[
        "redis-location",
        "redis-options",
        "redis-bad-ipv6",
        "redis-no-scheme",
        "memcached-location",
        "memcached-location-semicolon",
        "memcached-location-comma",
        "memcached-options",
        "memory-secret",
        "sqlite-unknown-key",
    ],
)
def test_bad_settings_are_refused_without_their_secrets(settings: dict[str, Any]) -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        memokit.create_cache(settings)
    assert not _leaks(_chain(raised.value), "Qx7kWv3p"), _chain(raised.value)
    with pytest.raises(ImproperlyConfigured) as raised:
        memokit.configure({"default": [tuple(settings.items())]})  # type: ignore[dict-item]
    assert not _leaks(_chain(raised.value), "Qx7kWv3p"), _chain(raised.value)


def test_isolated_cache_masks_what_its_errors_quote() -> None:
    with pytest.raises(ImproperlyConfigured) as raised, isolated_cache(timeout="token=Qx7kWv3p"):
        pass
    assert not _leaks(_chain(raised.value), "Qx7kWv3p"), _chain(raised.value)
