"""Framed payloads: the serializer's name, compression and a signature, around its bytes.

Plain pickle without compression stores bare pickles, as memokit always did.
Every other choice stores a frame::

    b"\\x80\\xe5"  kind  codec  body  [HMAC-SHA256, 32 bytes]

- ``b"\\x80\\xe5"`` (:data:`memokit.serializers.FRAME_MAGIC`) starts no pickle
  (pickle's PROTO opcode with protocol 229) and no raw integer, so frames share a
  store with the raw integers of ``incr`` and with bare pickles;
- ``kind`` names the serializer (``p`` pickle, ``s`` signed pickle, ``j`` JSON,
  ``m`` msgpack, ``c`` a custom one): a payload of another kind is a miss;
- ``codec`` names the compression (``-`` none, ``z`` zlib, ``Z`` zstd): a reader
  undoes what the payload says, whatever it would write itself;
- the signature, for signed pickle only, is HMAC-SHA256 with ``SECRET`` over
  everything before it; it is checked, against ``SECRET`` then each of
  ``OLD_SECRETS``, before anything is decompressed or unpickled (at the end, so
  it is computed over one contiguous buffer, without a copy).

Whether a payload must be signed is the reader's setting, never the payload's:
a signed-pickle cache reads an unsigned frame or a bare pickle as a miss.

A frame can follow a header that is not the serializer's (the header of a
decorated call's entry, :mod:`memokit.entry`): :func:`dumps_after` writes it
before the frame and the signature covers it, so ``loads(data, start)`` checks
the header and the frame together.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import pickle
import zlib
from collections.abc import Sequence
from typing import Any, Final

from . import serializers
from .exceptions import ImproperlyConfigured, UnreadableEntry
from .serializers import (
    FRAME_MAGIC,
    UNPICKLING_ERRORS,
    JSONSerializer,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
    get_serializer,
    unpickling_failed,
)

# One lookup less each on the signed read path. _unpickle is given only bodies
# whose signature was verified.
_compare_digest = hmac.compare_digest
_unpickle = pickle.loads

MIN_SECRET_BYTES: Final = 32
"""The shortest ``SECRET`` accepted: HMAC-SHA256's key should hold 256 bits."""

DEFAULT_COMPRESS_MIN_SIZE: Final = 1024
"""Payloads shorter than this many bytes are stored uncompressed."""

MAX_DECOMPRESSED: Final = 512 * 1024 * 1024
"""A compressed payload that would expand past this many bytes (Redis's largest
value) is unreadable: an unsigned store must not let a writer exhaust a reader's
memory with a small payload."""

_NAMES: Final = ("pickle", "signed-pickle", "json", "msgpack")
_KINDS: Final = {b"p": "pickle", b"s": "signed-pickle", b"j": "json", b"m": "msgpack"}
_MAC_SIZE: Final = hashlib.sha256().digest_size
_HEAD: Final = len(FRAME_MAGIC) + 2
_SIGNATURE: Final = -_MAC_SIZE
"""Where the signature starts, from the end (a constant: ``-_MAC_SIZE`` is computed
on every use)."""
_COPY_MAX: Final = 8 * 1024
"""Signed payloads up to this size are read from one copy of their body, larger
ones from a view of it: measured, copying costs less than a view's objects up to
about 8 KiB."""


class Compressor(abc.ABC):
    """One compression codec at one level; ``tag`` is its byte in the frame."""

    tag: bytes = b"?"
    name: str = "?"
    levels: range = range(0)
    default_level: int = 1

    def __init__(self, level: int | None) -> None:
        self.level = self.default_level if level is None else level

    @abc.abstractmethod
    def compress(self, data: bytes) -> bytes:
        """Return ``data`` compressed."""

    @abc.abstractmethod
    def decompress(self, data: bytes | memoryview) -> bytes:
        """Return ``data`` decompressed; raise on damaged data."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(level={self.level})"


def _deflate_module() -> Any:
    """zlib-ng's binding when installed (``pip install 'memokit[zlib-ng]'``), else zlib."""
    try:
        from zlib_ng import zlib_ng  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return zlib
    return zlib_ng


class ZlibCompressor(Compressor):
    """zlib (deflate): the standard library's, or zlib-ng's when it is installed.

    Both write and read the same zlib streams, so either reads the other's
    payloads. Measured on the 64 KiB benchmark value (500 small dicts): at level 1,
    zlib-ng compresses in about 40% of the standard library's time (keeping 17% of
    the bytes instead of 14%) and decompresses about 3x faster.
    """

    tag = b"z"
    name = "zlib"
    levels = range(10)

    def __init__(self, level: int | None) -> None:
        super().__init__(level)
        self._module = _deflate_module()

    def compress(self, data: bytes) -> bytes:
        """Return ``data`` deflated."""
        packed: bytes = self._module.compress(data, self.level)
        return packed

    def decompress(self, data: bytes | memoryview) -> bytes:
        """Return ``data`` inflated."""
        inflater = self._module.decompressobj()
        plain: bytes = inflater.decompress(data, MAX_DECOMPRESSED)
        if inflater.unconsumed_tail:
            raise UnreadableEntry(f"the payload expands past {MAX_DECOMPRESSED} bytes")
        if not inflater.eof:
            raise UnreadableEntry("the compressed payload is cut short")
        return plain


class ZstdCompressor(Compressor):
    """Zstandard (the ``zstandard`` package, ``pip install 'memokit[zstd]'``).

    Measured on a pickled list of 500 small dicts (36 KB): at level 1 it compresses
    3-4x faster than zlib at level 1, decompresses about 4x faster, and stores 25%
    fewer bytes (docs/configuration.md).
    """

    tag = b"Z"
    name = "zstd"
    levels = range(1, 23)

    def __init__(self, level: int | None) -> None:
        super().__init__(level)
        try:
            import zstandard
        except ImportError:
            raise ImproperlyConfigured(
                "COMPRESSOR 'zstd' needs the zstandard package: pip install 'memokit[zstd]'"
            ) from None
        # One compressor object is not thread-safe; these are cheap to make per call.
        self._module = zstandard

    def compress(self, data: bytes) -> bytes:
        """Return ``data`` compressed (with its size in the frame, for decompress)."""
        packed: bytes = self._module.ZstdCompressor(level=self.level).compress(data)
        return packed

    def decompress(self, data: bytes | memoryview) -> bytes:
        """Return ``data`` decompressed."""
        # The frame states its size, which a writer chooses: check it before allocating.
        size = self._module.frame_content_size(data)
        if size < 0:
            # Unstated, zstandard would allocate max_output_size for any such frame:
            # every read of one foreign payload would take 512 MiB.
            raise UnreadableEntry("the zstd frame does not state its size (memokit's always do)")
        if size > MAX_DECOMPRESSED:
            raise UnreadableEntry(f"the payload expands past {MAX_DECOMPRESSED} bytes")
        plain: bytes = self._module.ZstdDecompressor().decompress(
            data, max_output_size=MAX_DECOMPRESSED
        )
        return plain


_COMPRESSORS: Final[dict[str, type[Compressor]]] = {"zlib": ZlibCompressor, "zstd": ZstdCompressor}
_BY_TAG: dict[bytes, Compressor] = {}


def _decompressor(tag: bytes) -> Compressor:
    found = _BY_TAG.get(tag)
    if found is None:
        for cls in _COMPRESSORS.values():
            if cls.tag == tag:
                try:
                    found = _BY_TAG[tag] = cls(None)
                except ImproperlyConfigured as exc:
                    raise UnreadableEntry(f"the payload is {cls.name}-compressed: {exc}") from None
                break
        else:
            raise UnreadableEntry("the payload names a compression memokit does not know")
    return found


class Signer:
    """HMAC-SHA256 with the current secret; verification also accepts the old ones."""

    __slots__ = ("_pads",)

    def __init__(self, secret: bytes, old_secrets: Sequence[bytes] = ()) -> None:
        self._pads = [_hmac_pads(key) for key in (secret, *old_secrets)]

    def sign(self, data: bytes | memoryview) -> bytes:
        """Return the signature of ``data`` under the current secret."""
        return _hmac(self._pads[0], data)

    def states_after(self, lead: bytes) -> tuple[hashlib._Hash, hashlib._Hash, hashlib._Hash]:
        """The current secret's keyed states: inner after ``lead``, outer, and inner.

        ``HMAC(data)`` is ``outer.copy()`` updated with the digest of ``inner.copy()``
        updated with ``data``: the first state saves hashing ``lead`` for data that
        starts with it.
        """
        inner, outer = self._pads[0]
        after = inner.copy()
        after.update(lead)
        return after, outer, inner

    def verify(self, signature: bytes | memoryview, data: bytes | memoryview) -> bool:
        """Return whether ``signature`` of ``data`` was made by the current secret or an old one."""
        pads = self._pads
        if hmac.compare_digest(_hmac(pads[0], data), signature):
            return True
        return any(hmac.compare_digest(_hmac(old, data), signature) for old in pads[1:])

    def __repr__(self) -> str:
        old = len(self._pads) - 1
        return f"Signer(secret=<hidden>, old_secrets=<{old} hidden>)"


_Pads = tuple["hashlib._Hash", "hashlib._Hash"]


def _hmac_pads(key: bytes) -> _Pads:
    # HMAC (RFC 2104) with its two keyed states made once: OpenSSL 3's one-shot HMAC
    # fetches its algorithm on every call, which doubled the cost of a 1 KiB signature.
    block = hashlib.sha256().block_size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    return inner, outer


def _hmac(pads: _Pads, data: bytes | memoryview) -> bytes:
    inner = pads[0].copy()
    inner.update(data)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.digest()


class FramedSerializer:
    """A serializer whose payloads are frames (see the module's docstring)."""

    def __init__(
        self,
        inner: Serializer,
        kind: bytes,
        *,
        signer: Signer | None = None,
        compressor: Compressor | None = None,
        compress_min_size: int = DEFAULT_COMPRESS_MIN_SIZE,
    ) -> None:
        self.inner = inner
        self.kind = kind
        self.signer = signer
        self.compressor = compressor
        self.compress_min_size = compress_min_size
        # What an uncompressed frame of this kind starts with: loads' common case.
        self._plain_lead = FRAME_MAGIC + kind + b"-"
        # The current secret's keyed states with that lead already hashed, for the
        # frames without a header in front (loads' common case).
        self._lead_states = None if signer is None else signer.states_after(self._plain_lead)
        # Plain pickle is read by pickle.loads itself (one call less), failing as its
        # own loads would.
        self._unpickles = type(inner) is PickleSerializer

    def dumps(self, value: Any, header: bytes = b"") -> bytes:
        """Return the frame of ``value``, after ``header`` (which the signature covers too)."""
        body = self.inner.dumps(value)
        codec = b"-"
        compressor = self.compressor
        if compressor is not None and len(body) >= self.compress_min_size:
            packed = compressor.compress(body)
            if len(packed) < len(body):  # incompressible data stays as it is
                body, codec = packed, compressor.tag
        frame = header + FRAME_MAGIC + self.kind + codec + body
        if self.signer is not None:
            return frame + self.signer.sign(frame)
        return frame

    def loads(self, data: bytes, start: int = 0) -> Any:
        """Return the value of the frame at ``data[start:]``; anything else raises
        :class:`UnreadableEntry`.

        ``data[:start]`` is a header written by ``dumps(value, header)``: a signature
        covers it, so a signed frame moved behind another header does not verify.
        """
        # The common case first: an uncompressed frame of this kind, in bytes.
        if type(data) is bytes:
            head = start + _HEAD
            if data[start:head] == self._plain_lead:
                states = self._lead_states
                if states is None:
                    return self.inner.loads(data[head:])
                size = len(data)
                if size >= head + _MAC_SIZE:
                    # HMAC-SHA256 with the current secret (Signer.verify, inlined: a call
                    # costs as much as a tenth of the check) over data[:head] then the
                    # body; the old secrets are _loads' case. One copy of the body serves
                    # the HMAC and the unpickling: a memoryview and its slices cost more
                    # than copying 1 KiB, in objects made and code run.
                    if size <= _COPY_MAX:
                        body: bytes | memoryview = data[head:_SIGNATURE]
                    else:
                        body = memoryview(data)[head:_SIGNATURE]
                    after_lead, outer_keyed, keyed = states
                    if start:
                        inner = keyed.copy()
                        inner.update(data[:head])  # the entry's header, then the lead
                    else:
                        inner = after_lead.copy()  # the lead is hashed in it already
                    inner.update(body)
                    outer = outer_keyed.copy()
                    outer.update(inner.digest())
                    if _compare_digest(outer.digest(), data[_SIGNATURE:]):
                        if self._unpickles:
                            # What PickleSerializer.loads does; once: a failed unpickling
                            # is never run again (its reconstructors would run again).
                            try:
                                return _unpickle(body)  # signed by SECRET
                            except UNPICKLING_ERRORS as exc:
                                raise unpickling_failed(exc) from None
                        return self.inner.loads(bytes(body))
        return self._loads(data, start)

    def _loads(self, data: bytes, start: int) -> Any:
        try:
            whole = memoryview(data)
        except TypeError:  # a damaged store can hand back another type (SQLite's REAL)
            raise UnreadableEntry(f"the payload is a {type(data).__name__}, not bytes") from None
        view = whole[start:]
        if view[:2] != FRAME_MAGIC or len(view) < _HEAD:
            if self.kind == b"p":
                # A bare pickle, from before compression.
                return self.inner.loads(bytes(view) if start else data)
            if self.signer is not None:
                raise UnreadableEntry(
                    "the payload has no signature (written without SECRET, or by someone else); "
                    "it was not unpickled"
                )
            raise UnreadableEntry(f"the payload is not a {self._name()} frame")
        kind = bytes(view[2:3])
        if kind != self.kind:
            written = _KINDS.get(kind, "another serializer")
            raise UnreadableEntry(
                f"the payload was written with SERIALIZER {written!r}; this cache reads "
                f"{self._name()!r}" + ("; it was not unpickled" if self.signer is not None else "")
            )
        end = len(view)
        if self.signer is not None:
            end -= _MAC_SIZE
            if end < _HEAD or not self.signer.verify(view[end:], whole[: start + end]):
                raise UnreadableEntry(
                    "the payload's signature does not match SECRET or OLD_SECRETS (signed with "
                    "another secret, or written by someone else); it was not unpickled"
                )
        codec = bytes(view[3:4])
        body: bytes | memoryview = view[_HEAD:end]
        if codec != b"-":
            try:
                body = _decompressor(codec).decompress(body)
            except UnreadableEntry:
                raise
            except Exception as exc:
                raise UnreadableEntry(
                    f"cannot decompress the payload ({type(exc).__name__})"
                ) from None
        return self.inner.loads(bytes(body))

    def _name(self) -> str:
        return _KINDS.get(self.kind, "custom")

    def __repr__(self) -> str:
        parts = [f"{self._name()}", f"inner={self.inner!r}"]
        if self.signer is not None:
            parts.append("signed")
        if self.compressor is not None:
            parts.append(f"compressor={self.compressor!r}, min_size={self.compress_min_size}")
        return f"FramedSerializer({', '.join(parts)})"


_PLAIN_FRAMES = FramedSerializer(PickleSerializer(), b"p")


def dumps_after(serializer: Serializer, header: bytes, value: Any) -> bytes:
    """Return ``header`` followed by the payload of ``value``; a signature covers both."""
    if type(serializer) is FramedSerializer:
        return serializer.dumps(value, header)
    return header + serializer.dumps(value)


def read_plain_frame(data: bytes) -> Any:
    """Read a frame for a plain-pickle cache (one that compresses, or did before)."""
    return _PLAIN_FRAMES.loads(data)


serializers._frame_readers[:] = [read_plain_frame]


def _secret(value: object, name: str) -> bytes:
    # Never put the value itself in a message: it is a secret, and a wrong one is
    # often another secret pasted in the wrong place.
    if isinstance(value, str):
        try:
            # surrogateescape: os.environ gives bytes that are not UTF-8 as lone
            # surrogates, which this turns back into those bytes.
            value = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise ImproperlyConfigured(
                f"{name} is a str that UTF-8 cannot encode (it holds a lone surrogate); "
                f"give it as bytes, or make one with "
                f"python -c 'import secrets; print(secrets.token_hex(32))'"
            ) from None
    if not isinstance(value, bytes):
        raise ImproperlyConfigured(
            f"{name} must be a str or bytes, not a {type(value).__name__}; make one with "
            f"python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    if len(value) < MIN_SECRET_BYTES:
        raise ImproperlyConfigured(
            f"{name} must be at least {MIN_SECRET_BYTES} bytes, not {len(value)}; make one "
            f"with python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return value


def _old_secrets(value: object) -> list[bytes]:
    if value is None:
        return []
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise ImproperlyConfigured(
            f"OLD_SECRETS must be a list of secrets (newest first), not a "
            f"{type(value).__name__}; e.g. OPTIONS['OLD_SECRETS'] = [previous_secret]"
        )
    return [_secret(item, f"OLD_SECRETS[{i}]") for i, item in enumerate(value)]


def _compressor(name: object, min_size: object, level: object) -> tuple[Compressor | None, int]:
    if name is None:
        for setting, given in (("COMPRESS_MIN_SIZE", min_size), ("COMPRESS_LEVEL", level)):
            if given is not None:
                raise ImproperlyConfigured(
                    f"OPTIONS['{setting}'] has no effect without OPTIONS['COMPRESSOR']; add "
                    f"'COMPRESSOR': 'zlib' (or 'zstd'), or remove {setting}"
                )
        return None, DEFAULT_COMPRESS_MIN_SIZE
    if not isinstance(name, str) or name not in _COMPRESSORS:
        raise ImproperlyConfigured(
            f"COMPRESSOR must be one of {', '.join(map(repr, _COMPRESSORS))} or None, not {name!r}"
        )
    cls = _COMPRESSORS[name]
    if level is not None and (type(level) is not int or level not in cls.levels):
        raise ImproperlyConfigured(
            f"COMPRESS_LEVEL for {name} must be an int from {cls.levels.start} to "
            f"{cls.levels.stop - 1}, not {level!r}; e.g. 'COMPRESS_LEVEL': {cls.default_level}"
        )
    if min_size is None:
        min_size = DEFAULT_COMPRESS_MIN_SIZE
    if type(min_size) is not int or min_size < 0:
        raise ImproperlyConfigured(
            f"COMPRESS_MIN_SIZE must be an int of bytes >= 0, not {min_size!r}; "
            f"e.g. 'COMPRESS_MIN_SIZE': {DEFAULT_COMPRESS_MIN_SIZE}"
        )
    return cls(level), min_size


def build_serializer(
    serializer: Serializer | str | None,
    *,
    secret: object = None,
    old_secrets: object = None,
    compressor: object = None,
    compress_min_size: object = None,
    compress_level: object = None,
    sign_by_default: bool = True,
) -> Serializer:
    """Return the serializer the ``SERIALIZER``, ``SECRET`` and ``COMPRESS*`` options describe.

    ``sign_by_default``: whether a ``SECRET`` without a ``SERIALIZER`` signs (the
    backends other processes can write) or is accepted and unused (memory, dummy).
    """
    compressing, min_size = _compressor(compressor, compress_min_size, compress_level)
    if secret is None:
        if old_secrets is not None:
            raise ImproperlyConfigured(
                "OPTIONS['OLD_SECRETS'] without OPTIONS['SECRET']: set SECRET to the current "
                "secret, OLD_SECRETS to the ones it replaced"
            )
        if serializer == "signed-pickle":
            raise ImproperlyConfigured(
                "SERIALIZER 'signed-pickle' needs OPTIONS['SECRET'], at least 32 bytes: make "
                "one with python -c 'import secrets; print(secrets.token_hex(32))'"
            )
        signer = None
    else:
        if serializer not in (None, "signed-pickle"):
            if isinstance(serializer, str):
                shown = serializer
            else:  # a class (instantiated later) or an instance: its class's name
                cls = serializer if isinstance(serializer, type) else type(serializer)
                shown = cls.__name__
            raise ImproperlyConfigured(
                f"OPTIONS['SECRET'] is set, but SERIALIZER {shown!r} does not sign: use "
                f"SERIALIZER 'signed-pickle' (or leave SERIALIZER out) to sign with SECRET, "
                f"or remove SECRET"
            )
        signer = Signer(_secret(secret, "SECRET"), _old_secrets(old_secrets))
        if serializer is None and not sign_by_default:
            signer = None  # only this process writes the store (docs/security.md)
    if signer is not None:
        inner: Serializer = PickleSerializer()
        kind = b"s"
    elif serializer is None or serializer == "pickle":
        if compressing is None:
            return PickleSerializer()  # bare pickles, as always
        inner, kind = PickleSerializer(), b"p"
    elif serializer == "json":
        inner, kind = JSONSerializer(), b"j"
    elif serializer == "msgpack":
        inner, kind = MsgpackSerializer(), b"m"
    else:
        if isinstance(serializer, str) and "." not in serializer:
            raise ImproperlyConfigured(
                f"SERIALIZER {serializer!r} is not one of {', '.join(map(repr, _NAMES))} "
                f"nor a dotted path to a serializer ('package.module.name')"
            )
        inner = get_serializer(serializer)
        if compressing is None:
            return inner  # as it always was: its own bytes, unframed
        kind = b"c"
    return FramedSerializer(
        inner, kind, signer=signer, compressor=compressing, compress_min_size=min_size
    )


INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
"""The integers a backend may keep raw: what Redis's ``INCRBY`` and SQLite add to."""


def raw_ints_safe(serializer: Serializer) -> bool:
    """Whether no payload of ``serializer`` can be mistaken for a raw integer.

    Pickle at protocol 2+ and every frame start with ``\\x80``; a backend may
    then keep integers as decimal text (for ``INCRBY``), never unpickled.
    """
    if type(serializer) is PickleSerializer:
        return serializer.protocol >= 2
    return type(serializer) is FramedSerializer


PAYLOAD_OPTIONS: Final = frozenset(
    {"SECRET", "OLD_SECRETS", "COMPRESSOR", "COMPRESS_MIN_SIZE", "COMPRESS_LEVEL"}
)
"""The ``OPTIONS`` keys, besides ``SERIALIZER``, that shape payloads (every backend takes them)."""
