"""The Redis backend's settings and words: URLs and their secrets, options, scripts, expiry.

Everything here is pure (no connection): ``redis.py`` builds clients from it.
A ``LOCATION`` URL may carry a password; it is shown only through
:func:`display` and any foreign message only through :func:`scrub`, both masked
by :func:`memokit._secrets.redact`.
"""

from __future__ import annotations

import codecs
import math
import re
import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from redis.connection import parse_url

from .._secrets import redact, redact_exception, secrets_in
from ..exceptions import ImproperlyConfigured
from ..framing import PAYLOAD_OPTIONS
from ._remote import check_seconds

LATEST_EXPIRY: Final = 2**62 / 1000
"""The latest expiry sent as ``PX`` (seconds since the epoch), well inside Redis's
signed 64-bit milliseconds; a later one is stored as "never expires"."""

# redis-py annotates a pipeline's error with the command, arguments and all:
# "Command # 3 (SET :1:k <value bytes>...) of pipeline caused error: ...".
_PIPELINE_COMMAND = re.compile(r"(Command # \d+) \(.*?\) (of pipeline caused error)", re.DOTALL)

# incr: INCRBY only a key that exists, so that a missing key is an error and not
# a new counter; keep the expiry (INCRBY does). The result is read back with GET
# because Lua numbers are doubles and would round big 64-bit integers. A value
# INCRBY cannot add to (serialised, or an overflow) is reported, not changed.
INCR_SCRIPT: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local reply = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(reply) == 'table' and reply.err then return {reply.err} end
return redis.call('GET', KEYS[1])
"""

# get_or_set's second round trip: store unless a value is there, else return it.
GET_OR_ADD_SCRIPT: Final = """
local current = redis.call('GET', KEYS[1])
if current then return current end
if ARGV[2] == '' then
    redis.call('SET', KEYS[1], ARGV[1])
else
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return false
"""

# touch(key, None): PERSIST answers 0 for a key that already never expires,
# where memokit (unlike Django) answers True because the key is there.
PERSIST_SCRIPT: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('PERSIST', KEYS[1])
return 1
"""

OWNED: Final = frozenset(
    {"SERIALIZER", "LOCK_TIMEOUT", "READ_FROM_REPLICAS", "IGNORE_EXC", *PAYLOAD_OPTIONS}
)
"""The OPTIONS memokit reads itself; every other one goes to redis-py."""
REFUSED: Final = {
    "retry": "memokit never retries: a retried INCRBY could count twice",
    "retry_on_timeout": "memokit never retries: a retried INCRBY could count twice",
    "retry_on_error": "memokit never retries: a retried INCRBY could count twice",
    "decode_responses": "values are bytes; memokit decodes them itself",
    "connection_pool": "memokit builds one pool per process and per event loop",
}


def milliseconds(timeout: float | None) -> int | None:
    """The ``PX`` of ``timeout`` seconds, or None for "never expires"."""
    if timeout is None or timeout > LATEST_EXPIRY - time.time():
        return None
    # Round up: an entry lives at least as long as asked, never 0 ms (an error).
    return max(1, math.ceil(timeout * 1000))


def _parse(url: str) -> dict[str, Any]:
    return parse_url(url)  # type: ignore[no-untyped-call, no-any-return]  # unannotated in redis-py


def known_secrets(servers: list[str], client_options: Mapping[str, Any]) -> tuple[str, ...]:
    """Every secret the settings hold: URL credentials (as written and as redis-py
    decodes them) and the values of secret OPTIONS (``password``, ``ssl_password`` ...)."""
    return tuple(secrets_in({"LOCATION": servers, "OPTIONS": client_options}))


def display(servers: list[str]) -> str:
    """The servers as ``location`` and every message show them: credentials masked."""
    return ";".join(redact(url) for url in servers)


# What a Redis URL cannot hold raw: LOCATION splits servers at ';' and ',', and
# masking (memokit._secrets) ends a password, in the userinfo or the query, at
# either and at a blank.
_UNSPLITTABLE = re.compile(r"[\s;,]")


def check_servers(servers: list[str], secrets: tuple[str, ...]) -> None:
    """Raise ``ImproperlyConfigured`` for a URL redis-py cannot read, never quoting a secret."""
    # First every server, quoting none: the pieces of a password split at a ';' or ','
    # are in two servers, the second of which has no scheme.
    for url in servers:
        if "://" not in url and (len(servers) > 1 or "@" in url):
            raise ImproperlyConfigured(
                "LOCATION: a server has no scheme: write each as a URL such as "
                "'redis://host:6379/0' (or rediss://, unix://), separated by ';' or ','; a "
                "';', ',' or blank in a password must be percent-encoded, for example with "
                "urllib.parse.quote(password, safe='')"
            )
        if _UNSPLITTABLE.search(url):
            raise ImproperlyConfigured(
                "LOCATION: a ';', ',' or blank in a Redis URL (in a password, say) must be "
                "percent-encoded (LOCATION lists servers separated by ';' or ','), for example "
                "with urllib.parse.quote(password, safe='')"
            )
    for url in servers:
        scheme, _, rest = url.partition("://")
        # An "@" past the address means a raw "/", "?" or "#" in the credentials
        # ended it early: redis-py would take part of the password for the host.
        try:
            misread = "@" in rest[len(urlsplit(url).netloc) :] if rest else False
            _parse(url)
        except ValueError as exc:
            if "@" not in url or scheme.lower() not in ("redis", "rediss", "unix"):
                reason = redact(str(exc), secrets)
                raise ImproperlyConfigured(f"LOCATION {redact(url)}: {reason}") from None
            misread = True  # redis-py's message quotes a piece of the misread address
        if misread:
            raise ImproperlyConfigured(
                f"LOCATION {redact(url)}: redis-py cannot read it; a '/', '?', '#' or '@' in "
                f"a username or password must be percent-encoded, for example with "
                f"urllib.parse.quote(password, safe='')"
            )


def scrub(exc: Exception, secrets: tuple[str, ...]) -> str:
    """The message of ``exc`` without command text or secrets; its args are scrubbed too."""
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (_PIPELINE_COMMAND.sub(r"\1 \2", exc.args[0]), *exc.args[1:])
    # The cause is chained to memokit's error: it must not carry a value or secret either.
    redact_exception(exc, secrets)
    return redact(_PIPELINE_COMMAND.sub(r"\1 \2", str(exc)), secrets)


def check_client_options(
    options: Mapping[str, Any], timeouts: Mapping[str, float]
) -> dict[str, Any]:
    """The client OPTIONS, refusing those memokit cannot keep its promises with, and the
    socket timeouts (``timeouts``: name and default) checked finite."""
    checked = dict(options)
    for name in checked:
        if name.lower() in REFUSED:
            raise ImproperlyConfigured(
                f"OPTIONS[{name!r}] is not accepted by the Redis backend: {REFUSED[name.lower()]}"
            )
    encoding = checked.get("encoding", "utf-8")
    if not isinstance(encoding, str) or _codec(encoding) != "utf-8":
        # redis-py with hiredis packs the sync client's commands as UTF-8 whatever this
        # says, its asyncio client by it: one key would have two names.
        raise ImproperlyConfigured(
            f"OPTIONS['encoding'] = {encoding!r}: memokit sends keys as UTF-8, as redis-py's "
            f"sync client does whatever this says; remove the option"
        )
    for name, default in timeouts.items():
        checked[name] = check_seconds(checked.get(name, default), name)
    return checked


def _codec(name: str) -> str | None:
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def queue_sets(pipe: Any, items: dict[str, Any], px: int | None) -> None:
    """Queue a ``set_many`` on ``pipe``: one ``MSET`` without expiry, else a ``SET`` per key."""
    if px is None:
        pipe.mset(items)
    else:
        # The command itself: redis-py's set() checks a dozen options first (about
        # 6 µs a key, as much as the whole round trip of a batch of 10).
        queue = pipe.execute_command
        for key, payload in items.items():
            queue("SET", key, payload, "PX", px)


def refused_keys(items: dict[str, Any], px: int | None, replies: list[Any]) -> list[str]:
    """The keys whose command the server refused (an error in its reply)."""
    if px is None:  # one MSET: all or nothing
        return list(items) if isinstance(replies[0], Exception) else []
    return [key for key, reply in zip(items, replies, strict=True) if isinstance(reply, Exception)]


def found_payloads(keys: list[str], payloads: list[Any]) -> dict[str, Any]:
    """MGET's answer as ``{key: payload}`` without the missing keys."""
    found = dict(zip(keys, payloads, strict=True))  # C loops: the common case is all hits
    if None in payloads:
        return {k: p for k, p in found.items() if p is not None}
    return found


def send_set(client: Any, key: str, payload: Any, px: int | None, *flags: str) -> Any:
    """Send ``SET key payload [PX px] [flags]`` as redis-py's ``set()`` would, without its
    option checks; an async client returns the awaitable."""
    if px is None:
        return client.execute_command("SET", key, payload, *flags)
    return client.execute_command("SET", key, payload, "PX", px, *flags)
