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

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Final, TypeGuard
from urllib.parse import quote, unquote

MASK: Final = "***"

# Words that make a setting secret anywhere in its name, and the kinds of KEY that
# are secret (KEY_PREFIX, KEY_FUNCTION and a cache_key are not).
_WORDS = r"pass(?:word|wd|phrase)|secret|token|credential"
_KEYS = r"(?:api|access|private|signing|encryption|auth|master|hmac)_?key"
_SECRET_WORDS = re.compile(rf"{_WORDS}|(?:^|_){_KEYS}$", re.IGNORECASE)
# scheme://userinfo@ : userinfo runs to the last "@" before a blank, ";" or ","
# (LOCATION splits servers there, so a password cannot hold them raw).
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<auth>[^\s;,]*)@")
# A setting name is_secret_name() accepts, standing alone in a message.
_SECRET_WORD = rf"(?<![A-Za-z0-9_])(?:\w*(?:{_WORDS})\w*|(?:\w+_)?{_KEYS})(?![A-Za-z0-9_])"
# name=value, name: value, 'name': value, with the value quoted or bare.
_SECRET_PAIR = re.compile(
    rf"""(?P<name>(?P<q>['"]?)(?P<word>{_SECRET_WORD})(?P=q)\s*(?:=|:)\s*)"""
    r"""(?P<value>b?'(?:[^'\\]|\\.)*'|b?"(?:[^"\\]|\\.)*"|\[[^\]]*\]|\([^)]*\)|[^\s&,;)}\]'"]+)""",
    re.IGNORECASE,
)
_PAIR_HINT = re.compile(rf"{_WORDS}|key", re.IGNORECASE)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A shorter known secret is masked only where it stands alone: inside words it
# would garble every message (a password "1" in "Error 111").
_MIN_ANYWHERE = 4


def is_secret_name(name: object) -> bool:
    """Whether a setting called ``name`` holds a secret (password, secret, token, key)."""
    if not isinstance(name, str):
        return False
    return _SECRET_WORDS.search(name) is not None


def secrets_in(settings: object) -> list[str]:
    """The secrets ``settings`` hold, at any depth: str and bytes values under secret
    names (in a mapping or a ``(name, value)`` pair), the credentials of URLs, and
    under ``LOCATION`` whatever precedes the last ``@`` of an address without a scheme."""
    found: list[str] = []

    def collect(value: object, secret: bool, location: bool) -> None:
        if isinstance(value, Mapping):
            for name, item in value.items():
                collect(item, secret or is_secret_name(name), _is_location(name))
        elif _is_pair(value):
            collect(value[1], secret or is_secret_name(value[0]), _is_location(value[0]))
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                collect(item, secret, location)
        elif isinstance(value, str | bytes):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            if secret:
                found.append(text)
            elif location and "@" in text and "://" not in text:
                found.append(text.rpartition("@")[0])
            else:
                found.extend(url_secrets(text))

    collect(settings, False, False)
    return list(dict.fromkeys(s for s in found if s))


def _is_location(name: object) -> bool:
    return isinstance(name, str) and name.upper() == "LOCATION"


def _is_pair(value: object) -> TypeGuard[tuple[str, object]]:
    """A ``(name, value)`` item; a tuple of two addresses is not one."""
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and _IDENTIFIER.fullmatch(value[0]) is not None
    )


def url_secrets(url: str) -> list[str]:
    """The credentials in ``url``, as written and decoded: its userinfo (all of it, and
    the password after the first ``:``) and query values under secret names."""
    found: list[str] = []
    match = _URL_CREDENTIALS.match(url.strip())
    if match is not None:
        auth = match["auth"]
        _, sep, password = auth.partition(":")
        found += [auth, password] if sep else [auth]
    _, mark, query = url.partition("?")
    for pair in query.split("&") if mark else ():
        name, _, value = pair.partition("=")
        if is_secret_name(name):
            found.append(value)
    return [form for part in found for form in (part, unquote(part)) if part]


def _masked_url(match: re.Match[str]) -> str:
    user, sep, _ = match["auth"].partition(":")
    return f"{match['scheme']}{user}{sep}{MASK}@" if sep else f"{match['scheme']}{MASK}@"


def _masked_pair(match: re.Match[str]) -> str:
    if not is_secret_name(match["word"]):
        return match[0]
    return f"{match['name']}{MASK!r}" if match["value"][:1] in "'\"b" else f"{match['name']}{MASK}"


@functools.lru_cache(maxsize=64)
def _patterns(secrets: tuple[str, ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """For each way a message may spell one of ``secrets`` (raw, percent-encoded, as a
    repr would), that spelling and the pattern finding it; built once per cache."""
    forms: set[str] = set()
    for secret in secrets:
        forms |= {secret, _quoted(secret, ""), _quoted(secret, "/"), repr(secret)[1:-1]}
        forms.add(secret.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace"))
    found = []
    for form in sorted(form for form in forms if form):
        pattern = re.escape(form)
        if len(form) < _MIN_ANYWHERE:
            pattern = rf"(?<![A-Za-z0-9]){pattern}(?![A-Za-z0-9])"
        found.append((form, re.compile(pattern)))
    return tuple(found)


def _quoted(secret: str, safe: str) -> str:
    """``secret`` percent-encoded, whatever it holds: a lone surrogate (from bytes that
    are not UTF-8, by surrogateescape, or any other) must not make masking fail."""
    try:
        return quote(secret, safe=safe, errors="surrogateescape")
    except UnicodeEncodeError:
        return quote(secret, safe=safe, errors="surrogatepass")


def _scrubbed(value: object) -> object:
    """``value`` with the secret-named entries of any mapping or pair in it masked."""
    if isinstance(value, Mapping):
        return {
            name: (MASK if is_secret_name(name) else _scrubbed(item))
            for name, item in value.items()
        }
    if _is_pair(value):
        name, item = value
        return (name, MASK if is_secret_name(name) else _scrubbed(item))
    if isinstance(value, list | tuple):
        items = [_scrubbed(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def _mask_spans(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every spelling of ``secrets`` masked; overlapping ones as one."""
    spans: list[tuple[int, int]] = []
    for form, pattern in _patterns(secrets):
        if form in text:
            spans += [match.span() for match in pattern.finditer(text)]
    parts: list[str] = []
    end = 0
    for start, stop in sorted(spans):
        if start > end:
            parts += [text[end:start], MASK]
        elif not parts:
            parts.append(MASK)
        end = max(end, stop)
    return "".join(parts) + text[end:] if parts else text


def redact(value: object, secrets: Iterable[str] = ()) -> str:
    """Return ``value`` fit to show: a str as text, anything else as its repr, secrets masked.

    ``secrets`` are the exact secrets the caller holds (see :func:`secrets_in`
    and :func:`url_secrets`); they are masked wherever they appear.
    """
    text = value if isinstance(value, str) else repr(_scrubbed(value))
    if secrets:
        text = _mask_spans(text, tuple(secrets))
    # Pairs before URLs: a raw "@" in "?password=..." must not pass for a userinfo's end.
    # Each pattern runs only where its cheap hint is found (a failing call is redacted).
    if _PAIR_HINT.search(text):
        text = _SECRET_PAIR.sub(_masked_pair, text)
    return _URL_CREDENTIALS.sub(_masked_url, text) if "://" in text else text


def redact_exception(exc: BaseException, secrets: Iterable[str] = ()) -> BaseException:
    """Mask, in place, the str arguments of ``exc`` and of the exceptions chained to it.

    A traceback prints every exception of the chain: masking only the last
    message would leave the secret in its cause. Returns ``exc``.
    """
    secrets = tuple(secrets)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.args = tuple(
            redact(arg, secrets) if isinstance(arg, str) else arg for arg in current.args
        )
        current = current.__cause__ or current.__context__
    return exc
