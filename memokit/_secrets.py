"""One way to hide secrets in whatever memokit shows: ``repr``, ``location``, messages, logs.

Three things are masked, by ``***``:

- the credentials of a URL (``scheme://user:password@host``): everything between
  ``://`` and the *last* ``@`` of the address, since a raw ``@`` may be part of
  the password (redis-py splits there too); a username before the first ``:``
  stays visible, and userinfo without ``:`` (a token) is hidden whole;
- the value of any setting whose name says it is secret (:func:`is_secret_name`:
  ``PASSWORD``, ``SECRET``, ``OLD_SECRETS``, ``TOKEN``, ``API_KEY`` ...), in a
  mapping or written ``name=value`` / ``'name': value`` in a message;
- the exact secrets a backend knows it holds (its parsed password, its secret
  options), wherever a third-party message quotes them, raw or percent-encoded.

Masking may hide more than the secret (an ``@`` in a query string hides the host
before it); it never shows less.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import quote, unquote

MASK: Final = "***"

_SECRET_WORDS = re.compile(
    r"pass(?:word|wd|phrase)|secret|token|credential|(?:^|_)(?:api|access|private|signing)?_?key$",
    re.IGNORECASE,
)
# scheme://userinfo@ : userinfo runs to the last "@" before a blank, ";" or ","
# (LOCATION splits servers there, so a password cannot hold them raw).
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<auth>[^\s;,]*)@")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# name=value, name: value, 'name': value, with the value quoted or bare.
_SECRET_PAIR = re.compile(
    rf"""(?P<name>(?P<q>['"]?)(?P<word>{_NAME})(?P=q)\s*(?:=|:)\s*)"""
    r"""(?P<value>b?'(?:[^'\\]|\\.)*'|b?"(?:[^"\\]|\\.)*"|\[[^\]]*\]|\([^)]*\)|[^\s&,;)}\]]+)"""
)
# A shorter known secret is not searched for in foreign messages: it would
# garble them (a password "1" in "127.0.0.1") and short words are no secret.
_MIN_KNOWN = 4


def is_secret_name(name: object) -> bool:
    """Whether a setting called ``name`` holds a secret (password, secret, token, key)."""
    if not isinstance(name, str):
        return False
    # KEY_PREFIX and KEY_FUNCTION shape cache keys: only a name *ending* in KEY is secret.
    return name.upper() != "KEY" and _SECRET_WORDS.search(name) is not None


def secrets_in(options: object) -> list[str]:
    """The str and bytes values held under secret names in ``options`` (at any depth)."""
    found: list[str] = []

    def collect(value: object, secret: bool) -> None:
        if isinstance(value, Mapping):
            for name, item in value.items():
                collect(item, secret or is_secret_name(name))
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                collect(item, secret)
        elif secret and isinstance(value, str | bytes):
            found.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)

    collect(options, False)
    return found


def url_secrets(url: str) -> list[str]:
    """The userinfo of ``url`` and its parts as written and decoded, for :func:`redact`."""
    match = _URL_CREDENTIALS.match(url.strip())
    if match is None:
        return []
    auth = match["auth"]
    _, sep, password = auth.partition(":")
    parts = [auth, password] if sep else [auth]
    return [form for part in parts for form in (part, unquote(part)) if part]


def _masked_url(match: re.Match[str]) -> str:
    user, sep, _ = match["auth"].partition(":")
    return f"{match['scheme']}{user}{sep}{MASK}@" if sep else f"{match['scheme']}{MASK}@"


def _masked_pair(match: re.Match[str]) -> str:
    if not is_secret_name(match["word"]):
        return match[0]
    return f"{match['name']}{MASK!r}" if match["value"][:1] in "'\"b" else f"{match['name']}{MASK}"


def _forms(secret: str) -> set[str]:
    """How a message may spell ``secret``: raw, percent-encoded, as a repr would."""
    forms = {secret, quote(secret, safe=""), quote(secret), repr(secret)[1:-1]}
    forms.add(secret.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace"))
    return {form for form in forms if len(form) >= _MIN_KNOWN}


def _scrubbed(value: object) -> object:
    """``value`` with secret-named entries of any mapping in it replaced by the mask."""
    if isinstance(value, Mapping):
        return {
            name: (MASK if is_secret_name(name) else _scrubbed(item))
            for name, item in value.items()
        }
    if isinstance(value, list | tuple):
        items = [_scrubbed(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def redact(value: object, secrets: Iterable[str] = ()) -> str:
    """Return ``value`` fit to show: a str as text, anything else as its repr, secrets masked.

    ``secrets`` are the exact secrets the caller holds (see :func:`secrets_in`
    and :func:`url_secrets`); they are masked wherever they appear.
    """
    text = value if isinstance(value, str) else repr(_scrubbed(value))
    # Longest first, so that a secret holding another is masked whole.
    for form in sorted({f for s in secrets for f in _forms(s)}, key=len, reverse=True):
        text = text.replace(form, MASK)
    text = _URL_CREDENTIALS.sub(_masked_url, text)
    return _SECRET_PAIR.sub(_masked_pair, text)
