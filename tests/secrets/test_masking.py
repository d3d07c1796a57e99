"""memokit._secrets.redact: one masking function, whatever characters a secret holds."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from memokit._secrets import MASK, is_secret_name, redact, redact_exception, secrets_in

# Each secret is made of distinctive pieces around the awkward character, so a
# test can tell that no piece of it leaked, not only that it is not there whole.
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
    "all": "Qx7k@:/%#?é✓Wv3p",
}


def leaked(text: str, secret: str) -> list[str]:
    """The pieces of ``secret`` (and its non-ASCII part) that ``text`` shows."""
    extra = [c for c in secret if not c.isascii()]
    return [piece for piece in [*PIECES, "".join(extra)] if piece and piece in text]


TEMPLATES = {
    "user-password": "redis://app:{}@127.0.0.1:6379/0",
    "password": "rediss://:{}@cache.internal:6380",
    "token": "redis://{}@127.0.0.1:6379",  # a token alone, as the username
    "query": "redis://127.0.0.1:6379/0?password={}",
    "unix": "unix://:{}@/run/redis.sock?db=1",
}
URLS = [
    pytest.param(TEMPLATES[place].format(written), secret, id=f"{place}-{spelling}-{name}")
    for place in TEMPLATES
    for spelling in ("encoded", "raw")
    for name, secret in SECRETS.items()
    for written in [quote(secret, safe="") if spelling == "encoded" else secret]
    # A raw ":" makes a token user:password, and redis-py reads it so: the user shows.
    if not (place == "token" and ":" in written)
]


@pytest.mark.parametrize(("url", "secret"), URLS)
def test_a_url_never_shows_its_secret(url: str, secret: str) -> None:
    secrets = secrets_in(url)
    shown = {
        "alone": redact(url),
        "in a message": redact(f"Redis {url} is unavailable: refused"),
        "as a repr": redact(repr(url)),
        "in a list": redact([url, "redis://replica:6379"]),
        "in settings": redact({"LOCATION": url}),
        "quoted by a library": redact(f"could not parse {url!r} (as {secret!r})", secrets),
    }
    for surface, text in shown.items():
        assert not leaked(text, secret), f"{surface}: {text}"
    assert MASK in shown["alone"]


def test_the_username_and_the_address_stay_visible() -> None:
    url = f"redis://app:{quote('S3cret@Pa55', safe='')}@10.0.0.5:6379/2"
    assert redact(url) == "redis://app:***@10.0.0.5:6379/2"
    assert redact("redis://app:S3cret@Pa55@10.0.0.5:6379/2") == "redis://app:***@10.0.0.5:6379/2"
    assert redact("redis://10.0.0.5:6379/2;redis://:pw@10.0.0.6") == (
        "redis://10.0.0.5:6379/2;redis://:***@10.0.0.6"
    )
    assert redact("unix:///run/redis.sock?db=1") == "unix:///run/redis.sock?db=1"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        *[(n, True) for n in ("PASSWORD", "password", "ssl_password", "SECRET", "OLD_SECRETS")],
        *[(n, True) for n in ("TOKEN", "auth_token", "API_KEY", "signing_key", "passphrase")],
        *[(n, False) for n in ("KEY", "KEY_PREFIX", "KEY_FUNCTION", "cache_key", "username")],
        *[(n, False) for n in ("LOCATION", "TIMEOUT", "ssl_keyfile", "db", 5, None)],
    ],
)
def test_secret_names(name: Any, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_settings_are_masked_by_name_at_any_depth() -> None:
    settings = {
        "LOCATION": "redis://:Qx7k@Wv3p@h",
        "KEY_PREFIX": "shop",
        "OPTIONS": {
            "password": "Qx7k:Wv3p",
            "SECRET": b"Qx7k" * 8,
            "OLD_SECRETS": ["Qx7k/1", "Wv3p/2"],
            "ssl_password": "Qx7kéWv3p",
            "socket_timeout": 1.0,
        },
    }
    text = redact(settings)
    assert not leaked(text, "Qx7kéWv3p"), text
    assert "'KEY_PREFIX': 'shop'" in text
    assert "'socket_timeout': 1.0" in text
    # Pairs, as a list of items instead of a mapping.
    assert redact([("PASSWORD", "Qx7k"), ("db", 1)]) == "[('PASSWORD', '***'), ('db', 1)]"
    # Two addresses in a tuple are no (name, value) pair.
    assert redact(("redis://:Qx7k@h1", "redis://h2")) == "('redis://:***@h1', 'redis://h2')"
    assert "Qx7k" in secrets_in(("redis://:Qx7k@h1", "redis://h2"))
    found = secrets_in(settings)
    assert "Qx7k@Wv3p" in found
    assert "Qx7k/1" in found
    assert "shop" not in found


def test_secret_pairs_in_free_text_are_masked() -> None:
    text = redact(
        "bad OPTIONS {'password': 'Qx7k', 'token': b'Wv3p', 'db': 1} "
        'and password="Qx7k" and secret=Wv3p&db=1 and api_key: Qx7k, cache_key=k1'
    )
    assert not leaked(text, ""), text
    assert "'db': 1" in text
    assert "db=1" in text
    assert "cache_key=k1" in text


def test_short_secrets_are_masked_only_where_they_stand_alone() -> None:
    text = redact("Error 111 connecting to 127.0.0.1:6379 as ab (ab1)", ["ab", "1"])
    assert "Error 111" in text
    assert "as ***" in text
    assert "ab1" in text


def test_an_exception_chain_is_masked_in_place() -> None:
    def fail() -> None:
        try:
            raise ValueError("cannot use Qx7k@Wv3p")
        except ValueError as inner:
            raise RuntimeError("failed with password=Qx7k@Wv3p") from inner

    with pytest.raises(RuntimeError) as raised:
        fail()
    assert redact_exception(raised.value, ["Qx7k@Wv3p"]) is raised.value
    assert raised.value.args == ("failed with password=***",)
    assert raised.value.__cause__ is not None
    assert raised.value.__cause__.args == ("cannot use ***",)


def test_overlapping_secrets_are_masked_as_one() -> None:
    assert redact("a Qx7k@Wv3p b", ["Qx7k@Wv", "7k@Wv3p"]) == "a *** b"
    assert redact("Qx7k and Wv3p", ["Qx7k", "Wv3p"]) == "*** and ***"


@pytest.mark.parametrize(
    "secret",
    [f"Qx7k{chr(0xDCFF)}Wv3p", f"Qx7k{chr(0xD800)}Wv3p"],
    ids=["escaped-byte", "lone-surrogate"],
)
def test_a_secret_holding_a_lone_surrogate_is_masked(secret: str) -> None:
    # os.environ gives bytes that are not UTF-8 as lone surrogates: masking raised
    # UnicodeEncodeError (percent-encoding the secret), in place of the error it masked.
    text = redact(f"AUTH failed for {secret!r}, that is {secret}", [secret])
    assert not leaked(text, secret), text
