"""SERIALIZER, SECRET, OLD_SECRETS and COMPRESS* options: what each choice builds, and the
errors that name a wrong setting and its fix without ever showing a secret (issue 17)."""

from __future__ import annotations

import hashlib
import hmac
import pickle
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import memokit
from memokit import ImproperlyConfigured, PickleSerializer, UnreadableEntry, UnsupportedValue
from memokit.framing import FramedSerializer, Signer, build_serializer
from memokit.serializers import FRAME_MAGIC, JSONSerializer, MsgpackSerializer

SECRET = "s3cr3t-" + "k" * 40
OLD = "old-" + "o" * 40
# A secret with characters a careless mask would cut at (and that a repr escapes).
ODD_SECRET = "p@ss:w/rd%é-" + "x" * 30


def build(tmp_path: Path, backend: str = "sqlite", **options: Any) -> memokit.BaseCache:
    location = str(tmp_path / "c.sqlite3") if backend == "sqlite" else f"opts-{id(options)}"
    return memokit.create_cache({"BACKEND": backend, "LOCATION": location, "OPTIONS": options})


# -- what each choice builds -------------------------------------------------------


def test_without_options_values_are_bare_pickles_as_before(tmp_path: Path) -> None:
    cache = build(tmp_path)
    assert type(cache.serializer) is PickleSerializer
    assert cache.serializer.dumps({"a": 1}) == pickle.dumps({"a": 1}, pickle.HIGHEST_PROTOCOL)


@pytest.mark.parametrize("backend", ["sqlite", "filesystem"])
def test_a_secret_alone_signs_on_a_backend_others_can_write(tmp_path: Path, backend: str) -> None:
    location = str(tmp_path / ("c.sqlite3" if backend == "sqlite" else "dir"))
    cache = memokit.create_cache(
        {"BACKEND": backend, "LOCATION": location, "OPTIONS": {"SECRET": SECRET}}
    )
    assert isinstance(cache.serializer, FramedSerializer)
    assert cache.serializer.signer is not None
    cache.set("k", {"a": 1})
    assert cache.get("k") == {"a": 1}


@pytest.mark.server
@pytest.mark.parametrize("backend", ["redis", "memcached"])
def test_a_secret_alone_signs_on_a_network_backend(
    request: pytest.FixtureRequest, backend: str
) -> None:
    server = request.getfixturevalue(f"{backend}_server")
    cache = memokit.create_cache(
        {"BACKEND": backend, "LOCATION": server.url, "OPTIONS": {"SECRET": SECRET}}
    )
    try:
        assert isinstance(cache.serializer, FramedSerializer)
        assert cache.serializer.signer is not None
        cache.set("signed-by-default", {"a": 1})
        assert cache.get("signed-by-default") == {"a": 1}
        stored = cache._get(cache.make_key("signed-by-default"))
        assert stored.startswith(FRAME_MAGIC + b"s")
        cache.delete("signed-by-default")
    finally:
        cache.close()


@pytest.mark.parametrize("backend", ["memory", "dummy"])
def test_a_secret_alone_leaves_in_process_backends_unsigned(tmp_path: Path, backend: str) -> None:
    cache = build(tmp_path, backend, SECRET=SECRET)
    # Plain pickle: the memory backend keeps its immutable values as they are.
    assert type(cache.serializer) is PickleSerializer
    if backend == "memory":
        cache.set("k", ("a", 1))
        assert type(cache._get(cache.make_key("k"))) is tuple  # not serialised at all


def test_an_explicit_signed_pickle_signs_on_the_memory_backend_too(tmp_path: Path) -> None:
    cache = build(tmp_path, "memory", SERIALIZER="signed-pickle", SECRET=SECRET)
    assert isinstance(cache.serializer, FramedSerializer)
    assert cache.serializer.signer is not None
    cache.set("k", [1])
    assert cache.get("k") == [1]


@pytest.mark.parametrize(
    ("name", "inner"), [("json", JSONSerializer), ("msgpack", MsgpackSerializer)]
)
def test_json_and_msgpack_are_framed(tmp_path: Path, name: str, inner: type) -> None:
    cache = build(tmp_path, SERIALIZER=name)
    assert isinstance(cache.serializer, FramedSerializer)
    assert type(cache.serializer.inner) is inner
    assert cache.serializer.dumps([1]).startswith(FRAME_MAGIC)


def test_a_custom_serializer_stays_unframed_unless_compressed(tmp_path: Path) -> None:
    path = "memokit.serializers.JSONSerializer"
    assert type(build(tmp_path, SERIALIZER=path).serializer) is JSONSerializer
    compressed = build(tmp_path, SERIALIZER=path, COMPRESSOR="zlib").serializer
    assert isinstance(compressed, FramedSerializer)
    assert type(compressed.inner) is JSONSerializer
    instance = JSONSerializer()
    assert build(tmp_path, SERIALIZER=instance).serializer is instance


# -- configuration errors: at once, naming the setting and the fix ------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"SERIALIZER": "signed-pickle"}, r"'signed-pickle' needs OPTIONS\['SECRET'\].*token_hex"),
        ({"SECRET": SECRET, "SERIALIZER": "json"}, r"SECRET.*SERIALIZER 'json' does not sign"),
        ({"SECRET": SECRET, "SERIALIZER": "pickle"}, r"SECRET.*SERIALIZER 'pickle' does not sign"),
        (
            {"SECRET": SECRET, "SERIALIZER": JSONSerializer()},
            r"SECRET.*SERIALIZER 'JSONSerializer' does not sign",
        ),
        (
            {"SECRET": SECRET, "SERIALIZER": JSONSerializer},  # a class is instantiated
            r"SECRET.*SERIALIZER 'JSONSerializer' does not sign",
        ),
        ({"SECRET": "short"}, r"SECRET must be at least 32 bytes, not 5.*token_hex"),
        ({"SECRET": 12345}, r"SECRET must be a str or bytes, not a int"),
        ({"SECRET": "\ud800" + "k" * 40}, r"SECRET is a str that UTF-8 cannot encode.*bytes"),
        (
            {"SECRET": SECRET, "OLD_SECRETS": ["\ud800" + "k" * 40]},
            r"OLD_SECRETS\[0\] is a str that UTF-8 cannot encode",
        ),
        ({"SECRET": SECRET, "OLD_SECRETS": OLD}, r"OLD_SECRETS must be a list of secrets"),
        ({"SECRET": SECRET, "OLD_SECRETS": [OLD, "tiny"]}, r"OLD_SECRETS\[1\] must be at least"),
        ({"OLD_SECRETS": [OLD]}, r"OLD_SECRETS'\] without OPTIONS\['SECRET'\]"),
        ({"SERIALIZER": "jsn"}, r"SERIALIZER 'jsn' is not one of 'pickle', 'signed-pickle'"),
        ({"COMPRESSOR": "gzip"}, r"COMPRESSOR must be one of 'zlib', 'zstd' or None, not 'gzip'"),
        ({"COMPRESS_LEVEL": 3}, r"COMPRESS_LEVEL'\] has no effect without.*'COMPRESSOR': 'zlib'"),
        ({"COMPRESS_MIN_SIZE": 10}, r"COMPRESS_MIN_SIZE'\] has no effect without"),
        ({"COMPRESSOR": "zlib", "COMPRESS_LEVEL": 10}, r"COMPRESS_LEVEL for zlib.*0 to 9"),
        ({"COMPRESSOR": "zstd", "COMPRESS_LEVEL": 0}, r"COMPRESS_LEVEL for zstd.*1 to 22"),
        ({"COMPRESSOR": "zlib", "COMPRESS_LEVEL": True}, r"COMPRESS_LEVEL.*not True"),
        ({"COMPRESSOR": "zlib", "COMPRESS_MIN_SIZE": -1}, r"COMPRESS_MIN_SIZE must be an int"),
        ({"COMPRESSOR": "zlib", "COMPRESS_MIN_SIZE": 1.5}, r"COMPRESS_MIN_SIZE must be an int"),
    ],
)
@pytest.mark.parametrize("backend", ["sqlite", "memory"])
def test_bad_payload_options_raise_at_once(
    tmp_path: Path, backend: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        build(tmp_path, backend, **options)


@pytest.mark.parametrize("secret", [SECRET, ODD_SECRET, ODD_SECRET.encode()])
def test_a_secret_never_shows_in_repr_errors_or_warnings(
    tmp_path: Path, secret: str | bytes, recwarn: pytest.WarningsRecorder
) -> None:
    text = secret.decode() if isinstance(secret, bytes) else secret
    # Pieces too, and the forms a repr or an encoding would give.
    needles = {text, text[:12], repr(text), repr(text.encode()), text.encode().hex()}
    shown: list[str] = []
    cache = build(tmp_path, SECRET=secret, OLD_SECRETS=[secret])
    shown += [repr(cache), str(cache.location), repr(cache.serializer)]
    shown += [repr(cache.serializer.signer)]  # type: ignore[attr-defined]
    for bad in (
        {"SECRET": secret, "SERIALIZER": "json"},
        {"SECRET": secret, "OLD_SECRETS": text},
        {"SECRET": secret, "OLD_SECRETS": [text[:20]]},
        {"SECRET": secret, "COMPRESSOR": "nope"},
        {"SECRET": secret, "MAX_ENTRYS": 3},
    ):
        with pytest.raises(ImproperlyConfigured) as info:
            build(tmp_path, **bad)
        shown.append(str(info.value))
        shown.append(repr(info.value.__cause__) + repr(info.value.__context__))
    with pytest.raises(ImproperlyConfigured) as info:
        memokit.configure({"default": {"BACKEND": "memory", "OPTIONS": {"SECRET": text[:20]}}})
    shown.append(str(info.value))
    # A payload signed with another secret: the warning names neither.
    other = build(tmp_path, SECRET="another-" + "z" * 40)
    other.set("k", 1.5)
    with pytest.warns(memokit.CorruptEntryWarning) as record:
        assert cache.get("k") is None
    shown += [str(w.message) for w in record]
    for line in shown:
        for needle in needles:
            assert needle not in line, line


def test_a_secret_from_the_environment_with_bytes_not_utf8_is_those_bytes(tmp_path: Path) -> None:
    # os.environ gives bytes that are not UTF-8 as lone surrogates (surrogateescape).
    raw = b"\xff\xfe" + b"k" * 40
    build(tmp_path, SECRET=raw.decode("utf-8", "surrogateescape")).set("k", [1])
    assert build(tmp_path, SECRET=raw).get("k") == [1]


def test_the_django_adapter_never_signs_with_djangos_secret_key(tmp_path: Path) -> None:
    pytest.importorskip("django")
    # Django's settings are process-wide: a child process of its own configures them.
    script = textwrap.dedent(
        f"""
        import django
        from django.conf import settings
        settings.configure(SECRET_KEY={SECRET!r}, CACHES={{"default": {{
            "BACKEND": "memokit.contrib.django.MemokitCache",
            "LOCATION": {str(tmp_path / "d.sqlite3")!r},
            "OPTIONS": {{"BACKEND": "sqlite"}},
        }}}})
        django.setup()
        from django.core.cache import cache
        print(type(cache.memokit.serializer).__name__)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "PickleSerializer"
    source = Path(memokit.__file__).parent.joinpath("contrib", "django.py").read_text()
    assert "SECRET_KEY" not in source


# -- signing, rotation, compression ------------------------------------------------


def test_rotation_reads_old_secrets_and_misses_unknown_ones(tmp_path: Path) -> None:
    old = build(tmp_path, SECRET=OLD)
    old.set("by-old", {"v": 1})
    unknown = build(tmp_path, SECRET="unknown-" + "u" * 40)
    unknown.set("by-unknown", {"v": 2})
    rotated = build(tmp_path, SECRET=SECRET, OLD_SECRETS=[OLD])
    assert rotated.get("by-old") == {"v": 1}
    with pytest.warns(memokit.CorruptEntryWarning, match="signature does not match"):
        assert rotated.get("by-unknown", "miss") == "miss"
    # Rewritten under the new secret: a reader without the old one reads it too.
    rotated.set("by-old", {"v": 3})
    assert build(tmp_path, SECRET=SECRET).get("by-old") == {"v": 3}


_rebuilds: list[str] = []


def _rebuild_failing(label: str) -> None:
    _rebuilds.append(label)
    raise ValueError("cannot rebuild")


class RebuildFails:
    """Its unpickling runs ``_rebuild_failing``, which fails: a value whose class changed."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_rebuild_failing, ("ran",))


@pytest.mark.parametrize("options", [{}, {"SECRET": SECRET}], ids=["pickle", "signed-pickle"])
def test_a_value_that_fails_to_unpickle_is_unpickled_once(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    # Signed pickle's fast read tried a view of the payload, then on failure unpickled
    # it again through the serializer (for its message): every reconstructor ran twice.
    cache = build(tmp_path, **options)
    cache.set("k", RebuildFails())
    _rebuilds.clear()
    with pytest.warns(memokit.CorruptEntryWarning, match=r"cannot unpickle.*ValueError"):
        assert cache.get("k", "miss") == "miss"
    assert _rebuilds == ["ran"]


def test_a_signed_frame_that_was_tampered_with_is_never_unpickled() -> None:
    serializer = build_serializer("signed-pickle", secret=SECRET)
    frame = bytearray(serializer.dumps({"a": 1}))
    frame[-3] ^= 1
    with pytest.raises(UnreadableEntry, match="signature does not match"):
        serializer.loads(bytes(frame))
    with pytest.raises(UnreadableEntry, match="no signature"):
        serializer.loads(pickle.dumps({"a": 1}))
    with pytest.raises(UnreadableEntry, match="no signature"):
        serializer.loads(b"")


class Counted:
    """Counts its unpickling in ``_rebuilds``: a value that must never be read runs nothing."""

    def __init__(self, size: int) -> None:
        self.data = b"v" * size

    def __reduce__(self) -> tuple[Any, tuple[str, bytes]]:
        return (_rebuilt, ("unpickled", self.data))


def _rebuilt(label: str, data: bytes) -> int:
    _rebuilds.append(label)
    return len(data)


@pytest.mark.parametrize("header", [b"", b"entry-header"], ids=["bare", "after-header"])
@pytest.mark.parametrize("size", [100, 20_000], ids=["copied", "viewed"])
def test_every_byte_of_a_signed_frame_is_checked_before_unpickling(
    header: bytes, size: int
) -> None:
    # The read path hashes the header and the frame's lead apart from the body (the
    # lead from a state made once), and copies small bodies but views large ones:
    # a change anywhere, in either case, must still fail the signature.
    serializer = build_serializer("signed-pickle", secret=SECRET, old_secrets=[OLD])
    assert isinstance(serializer, FramedSerializer)
    start = len(header)
    frame = serializer.dumps(Counted(size), header)
    # The format, made here by hand: what other versions of memokit write and read.
    signed = header + FRAME_MAGIC + b"s-" + pickle.dumps(Counted(size), pickle.HIGHEST_PROTOCOL)
    assert frame == signed + hmac.new(SECRET.encode(), signed, hashlib.sha256).digest()
    _rebuilds.clear()
    assert serializer.loads(frame, start) == size
    assert _rebuilds == ["unpickled"]
    _rebuilds.clear()
    for where in sorted(
        {
            0,
            start - 1,
            start,
            start + 2,
            start + 3,
            start + 4,
            len(frame) // 2,
            len(frame) - 33,
            len(frame) - 32,
            len(frame) - 1,
        }
        - {-1}
    ):
        tampered = bytearray(frame)
        tampered[where] ^= 0x01
        with pytest.raises(UnreadableEntry, match=r"signature|written with"):
            serializer.loads(bytes(tampered), start)
    for cut in (frame[:-1], frame[: start + 4 + 32], frame[: start + 4 + 31], frame + b"x"):
        with pytest.raises(UnreadableEntry):
            serializer.loads(cut, start)
    assert _rebuilds == []
    # A frame signed with an old secret takes the slow path, and reads.
    old = build_serializer("signed-pickle", secret=OLD)
    assert serializer.loads(old.dumps(Counted(size), header), start) == size
    assert _rebuilds == ["unpickled"]


@pytest.mark.parametrize("codec", ["zlib", "zstd"])
@pytest.mark.parametrize("serializer", ["pickle", "signed-pickle", "json", "msgpack"])
def test_compression_is_recorded_and_undone_by_any_reader(serializer: str, codec: str) -> None:
    secret = SECRET if serializer == "signed-pickle" else None
    writer = build_serializer(serializer, secret=secret, compressor=codec, compress_min_size=100)
    plain_reader = build_serializer(serializer, secret=secret)
    small, large = ["x"], ["x" * 1000]
    assert writer.dumps(small)[3:4] == b"-"  # under the threshold
    packed = writer.dumps(large)
    assert packed[3:4] == {"zlib": b"z", "zstd": b"Z"}[codec]
    assert len(packed) < 200
    assert writer.loads(packed) == large
    assert plain_reader.loads(packed) == large  # the payload says what to undo
    assert writer.loads(plain_reader.dumps(large)) == large


def test_incompressible_data_is_stored_as_it_is() -> None:
    serializer = build_serializer("pickle", compressor="zlib", compress_min_size=0)
    data = random.Random(17).randbytes(4096)  # noise does not compress
    assert serializer.dumps(data)[3:4] == b"-"


def test_enabling_compression_still_reads_bare_pickles(tmp_path: Path) -> None:
    build(tmp_path).set("k", ["v"] * 500)
    compressing = build(tmp_path, COMPRESSOR="zlib")
    assert compressing.get("k") == ["v"] * 500
    compressing.set("k", ["w"] * 500)
    assert build(tmp_path).get("k") == ["w"] * 500


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        ({"SERIALIZER": "json"}, {}),
        ({}, {"SERIALIZER": "json"}),
        ({"SERIALIZER": "msgpack"}, {"SERIALIZER": "json"}),
        ({"SECRET": SECRET}, {}),
        ({}, {"SECRET": SECRET}),
        ({"COMPRESSOR": "zlib"}, {"SECRET": SECRET}),
    ],
)
def test_another_serializers_payload_is_a_miss(
    tmp_path: Path, writer: dict[str, Any], reader: dict[str, Any]
) -> None:
    build(tmp_path, **writer).set("k", ["v"] * 500)
    with pytest.warns(memokit.CorruptEntryWarning):
        assert build(tmp_path, **reader).get("k", "miss") == "miss"


def test_signer_repr_hides_the_secrets() -> None:
    assert repr(Signer(SECRET.encode(), [OLD.encode()])) == (
        "Signer(secret=<hidden>, old_secrets=<1 hidden>)"
    )


# -- JSON and msgpack refuse what they would change -----------------------------------


class Color(int):
    pass


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((1, 2), r"JSON cannot store a 'tuple' object as it is; store a list"),
        ({"a": (1,)}, r"'tuple' object at value\['a'\]"),
        ({1: "a"}, r"dict key of type 'int'.*keys must be str"),
        ({"a": {1, 2}}, r"'set' object at value\['a'\]"),
        (b"x", r"'bytes' object"),
        (float("nan"), r"the float nan.*no NaN or infinity"),
        ([float("inf")], r"the float inf at value\[0\]"),
        (Color(3), r"'Color' object"),
        pytest.param(10**5000, r"JSON cannot store this value", id="huge-int"),
    ],
)
def test_json_refuses_values_it_would_change(value: Any, message: str) -> None:
    with pytest.raises(UnsupportedValue, match=message) as info:
        JSONSerializer().dumps(value)
    assert isinstance(info.value, pickle.PicklingError)  # what cache.set already raises
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((1, 2), r"msgpack cannot store a 'tuple' object"),
        ({"a": frozenset()}, r"'frozenset' object at value\['a'\]"),
        ({(1,): "a"}, r"dict key of type 'tuple'"),
        (2**64, r"an int outside 64 bits"),
        (bytearray(b"x"), r"'bytearray' object"),
    ],
)
def test_msgpack_refuses_values_it_would_change(value: Any, message: str) -> None:
    with pytest.raises(UnsupportedValue, match=message):
        MsgpackSerializer().dumps(value)


def test_a_value_that_contains_itself_is_refused() -> None:
    value: list[Any] = []
    value.append(value)
    with pytest.raises(UnsupportedValue, match="nested too deeply or contains itself"):
        JSONSerializer().dumps(value)


def test_what_json_and_msgpack_round_trip() -> None:
    common = [None, True, 0, -(2**63), 1.5, "é\u2603", [], {}, [1, ["a", {"b": None}]]]
    for value in [*common, 10**30, {"k": [1.0, "2"]}]:
        assert JSONSerializer().loads(JSONSerializer().dumps(value)) == value
    packer = MsgpackSerializer()
    for value in [*common, 2**64 - 1, b"\x00", {1: b"x", b"k": 2.5, None: True}]:
        result = packer.loads(packer.dumps(value))
        assert result == value
        assert type(result) is type(value)


@pytest.mark.parametrize("size", [0, 1, 32, 64, 65, 200])
def test_the_signature_is_hmac_sha256(size: int) -> None:
    import hashlib
    import hmac

    key = bytes(range(size % 256)) * (size // 256 + 1)
    key = key[:size] if size else b""
    data = b"payload" * 300
    signer = Signer(key, [b"old"])
    expected = hmac.new(key, data, hashlib.sha256).digest()
    assert signer.sign(data) == expected
    assert signer.verify(expected, memoryview(data))
    assert signer.verify(hmac.new(b"old", data, hashlib.sha256).digest(), data)
    assert not signer.verify(hmac.new(b"other", data, hashlib.sha256).digest(), data)


@pytest.mark.parametrize("codec", ["zlib", "zstd"])
def test_a_payload_that_would_expand_past_the_limit_is_unreadable(
    codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memokit import framing

    serializer = build_serializer("json", compressor=codec, compress_min_size=0)
    frame = serializer.dumps(["x" * 5000])
    with pytest.raises(UnreadableEntry, match=r"cannot decompress|cut short"):
        serializer.loads(frame[:-5])
    monkeypatch.setattr(framing, "MAX_DECOMPRESSED", 1000)
    with pytest.raises(UnreadableEntry, match="expands past 1000 bytes"):
        serializer.loads(frame)


def test_a_zstd_frame_that_does_not_state_its_size_is_unreadable_without_allocating() -> None:
    # zstandard preallocates max_output_size for a frame without a content size:
    # any writer of an unsigned store could make every read take 512 MiB. memokit's
    # own frames always state their size.
    import tracemalloc

    zstandard = pytest.importorskip("zstandard")
    serializer = build_serializer("json", compressor="zstd", compress_min_size=0)
    body = zstandard.ZstdCompressor(write_content_size=False).compress(b'["x"]')
    assert zstandard.frame_content_size(body) == -1
    tracemalloc.start()
    try:
        with pytest.raises(UnreadableEntry, match="does not state its size"):
            serializer.loads(FRAME_MAGIC + b"jZ" + body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert serializer.loads(serializer.dumps(["x" * 5000])) == ["x" * 5000]
