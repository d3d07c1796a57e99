"""A persistent backend in one SQLite database file, shared by threads and processes.

The database runs in WAL mode with ``synchronous=NORMAL``: readers never block the
writer, and a crash of the application loses nothing that was committed (a power
failure may lose the last commits, never consistency). Each thread of each process
has its own connection; a connection inherited through ``fork`` is never used nor
closed by the child, since closing it could disturb the parent's locks and WAL.

Schema (for ``TABLE="memokit_cache"``): ``memokit_cache(key, value, expires)``
without rowid, an index on ``expires``, and a one-row table ``memokit_cache__meta``
whose entry count two triggers keep, so that the cull check reads one row instead of
running ``COUNT(*)``; a cull recounts first (the count drifts up when another program
replaces rows with ``INSERT OR REPLACE``, which fires no delete trigger). ``expires``
is an absolute ``time.time()`` (``inf`` for never) computed in Python, so freezegun
controls expiry. Exact ``int`` values in the 64-bit range are stored as SQLite
integers (when the serializer is pickle), which lets ``incr`` add inside one
``UPDATE``; everything else is a serialised blob.

Every new connection first checks the database file, its directory and their
parents (``_files.check_private_file``, the filesystem store's checks), and
compares the file's inode before and after ``sqlite3.connect``, which opens by
path: a database swapped in by another user is refused, never read.
"""

# SQL is built only in Sql, from the table name passed through _quote (an
# identifier, quotes doubled); every value is a bound parameter.

from __future__ import annotations

import functools
import itertools
import math
import os
import pickle
import sqlite3
import threading
from collections.abc import Callable, Mapping
from time import time as _now
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar, Unpack

from ..exceptions import ImproperlyConfigured
from ..exceptions import UnsafeLocation as UnsafeLocation  # raised for an unsafe LOCATION
from ..framing import INT64_MAX, INT64_MIN, raw_ints_safe
from ..serializers import UNPICKLING_ERRORS, PickleSerializer, after_failed_unpickling
from . import _forkgate
from ._files import location_path, unusable_location
from ._sqlite_conns import SQLiteConnections, ThreadConnection
from ._sqlite_conns import _inherited as _inherited  # tests look for inherited connections here
from ._sqlite_sql import CHUNK, Sql, check_table, chunks, placeholders, too_large
from ._tierstore import SAME
from .base import (
    MISSING,
    BaseCache,
    Capabilities,
    CommonSettings,
    CullsByCount,
    check_culling,
)

_loads = pickle.loads
_STAMPED_CHUNK = CHUNK // 2  # two parameters per key
_PURGE_EVERY = 512  # writes between two sweeps of expired rows, per instance
_PURGE_BATCH = 256
_CANNOT_OPEN = {"unable to open database file", "attempt to write a readonly database"}
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _undecodable(exc: BaseException) -> bool:
    """Whether ``exc`` is sqlite3 failing to decode text as UTF-8: text another program
    stored in the value column, which memokit fills with blobs and integers only."""
    return isinstance(exc, sqlite3.OperationalError) and str(exc).startswith(
        "Could not decode to UTF-8"
    )


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _reading_any_text(
    read: Callable[Concatenate[SQLiteCache, _P], _R],
) -> Callable[Concatenate[SQLiteCache, _P], _R]:
    """``read`` (a primitive that returns stored values), run again with
    :meth:`SQLiteCache._leniently` when text that is not UTF-8 failed it."""

    def run(self: SQLiteCache, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return read(self, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            if not _undecodable(exc):
                raise
        return self._leniently(read, self, *args, **kwargs)

    functools.update_wrapper(run, read)
    return run


class SQLiteCache(SQLiteConnections, CullsByCount, BaseCache):
    """Persistent cache in an SQLite database file, shared by threads and processes."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        culls=True,
        cull_rule="count >= MAX_ENTRIES",
        lru=False,
        local_clock=True,
        atomic_incr=True,
        cross_process=True,
        persistent=True,
        blocking_io=True,
    )
    option_names: ClassVar[frozenset[str]] = BaseCache.option_names | {
        "MAX_ENTRIES",
        "CULL_FREQUENCY",
        "TABLE",
        "BUSY_TIMEOUT",
    }

    def __init__(
        self,
        location: str | os.PathLike[str] = "",
        *,
        max_entries: int = 300,
        cull_frequency: int = 3,
        table: str = "memokit_cache",
        busy_timeout: float = 5.0,
        **settings: Unpack[CommonSettings],
    ) -> None:
        if isinstance(location, str) and (location == ":memory:" or location.startswith("file:")):
            raise ImproperlyConfigured(
                f"LOCATION of the sqlite backend must be a database file path, not "
                f"{location!r}: an in-memory database is private to one connection. "
                f"Use the 'memory' backend for an in-process cache."
            )
        path = location_path(location, "sqlite")
        super().__init__(os.fspath(location), **settings)
        self._max_entries, self._cull_frequency = check_culling(max_entries, cull_frequency)
        check_table(table)
        if (
            isinstance(busy_timeout, bool)
            or not isinstance(busy_timeout, int | float)
            or not 0 <= busy_timeout < math.inf
        ):
            raise ImproperlyConfigured(
                f"BUSY_TIMEOUT must be a finite number of seconds >= 0, not {busy_timeout!r}; "
                f"for example OPTIONS={{'BUSY_TIMEOUT': 5}}"
            )
        self._path = path
        self._table = table
        self._busy_timeout = float(busy_timeout)
        self._sql = Sql(table)
        self._local = threading.local()
        self._writes = itertools.count()
        self._bare_pickles = type(self.serializer) is PickleSerializer
        self._raw_ints = self._bare_pickles or raw_ints_safe(self.serializer)
        if path.is_dir():
            raise ImproperlyConfigured(
                f"LOCATION {str(path)!r} of the sqlite backend is a directory; LOCATION names "
                f"the database file, for example {str(path / 'cache.sqlite3')!r}"
            )
        try:
            conn = self._connection()  # fail now, with the real error, rather than at first use
            # SQLite opens a file it may not write read-only, silently, and even takes
            # the write lock then: only a write statement (rolled back) tells.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(self._sql.delete, ("",)).fetchall()
            finally:
                conn.execute("ROLLBACK")
        except UnsafeLocation:
            raise
        except OSError as exc:
            raise unusable_location(path, exc, "sqlite") from exc
        except sqlite3.OperationalError as exc:
            # The same refusals, in SQLite's words (a file we may read but not write).
            if str(exc) not in _CANNOT_OPEN:
                raise
            raise ImproperlyConfigured(
                f"LOCATION {str(path)!r} of the sqlite backend cannot be used: {exc}. Make the "
                f"file and its directory writable by this process (uid {os.geteuid()}), or set "
                f"LOCATION to another database file."
            ) from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}(location={str(self._path)!r}, table={self._table!r})"

    # -- connections ------------------------------------------------------------

    def _delete_expired(self, conn: sqlite3.Connection, keys: list[str], now: float) -> None:
        """Remove expired rows if the write lock is free at once; never wait for it.

        Readers never wait for writers: when another connection writes, the rows
        stay for the periodic sweep or a cull to remove.
        """
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            for chunk in chunks(keys):
                conn.execute(
                    self._sql.delete_expired_keys + placeholders(len(chunk)), [now, *chunk]
                )
        except sqlite3.OperationalError:
            pass  # busy or locked: another writer holds the lock
        finally:
            conn.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout * 1000)}")

    def close(self, **kwargs: Any) -> None:
        """Close this thread's connection; the next call opens a new one."""
        state = getattr(self._local, "state", None)
        if state is not None and state.pid == os.getpid():
            del self._local.state
            state.slot.enter()
            try:
                if state.conn is not None:
                    state.conn.close()
                    state.conn = None
            finally:
                state.slot.busy -= 1  # Slot.leave(), inlined

    # -- encoding ---------------------------------------------------------------

    def _encode(self, value: Any) -> Any:
        if self._raw_ints and type(value) is int and INT64_MIN <= value <= INT64_MAX:
            return value
        return self.serializer.dumps(value)

    def _decode(self, payload: Any) -> Any:
        if self._bare_pickles and type(payload) is bytes:
            # PickleSerializer.loads inlined (the hot read), and what it does on a
            # failure, without unpickling again (reconstructors would run twice).
            try:
                return _loads(payload)  # pickle trusts the store (docs/security.md)
            except UNPICKLING_ERRORS as exc:
                return after_failed_unpickling(payload, exc)
        if type(payload) is int:
            return payload
        return self.serializer.loads(payload)

    @staticmethod
    def _expiry(timeout: float | None) -> float:
        return math.inf if timeout is None else _now() + timeout

    # -- culling ----------------------------------------------------------------

    def _cull_if_full(self, conn: sqlite3.Connection, in_transaction: bool) -> None:
        max_entries = self._max_entries  # read on every call, as Django's tests expect
        (entries,) = conn.execute(self._sql.count).fetchone()
        if entries < max_entries:
            if next(self._writes) % _PURGE_EVERY == _PURGE_EVERY - 1:
                conn.execute(self._sql.purge, (_now(), _PURGE_BATCH))
            return
        if in_transaction:
            self._cull(conn, max_entries)
        else:
            with self._transaction(conn):
                self._cull(conn, max_entries)

    def _cull(self, conn: sqlite3.Connection, max_entries: int) -> None:
        # Count the rows under the write lock: another process may have culled
        # meanwhile, and another program's INSERT OR REPLACE deletes the old row without
        # firing the delete trigger, so the kept count only drifts up. Left drifted, it
        # would cull a third of a table below MAX_ENTRIES on every few writes.
        (entries,) = conn.execute(self._sql.recount).fetchone()
        if entries < max_entries:
            return
        if self._cull_frequency == 0:
            conn.execute(self._sql.clear)
            return
        # Expired rows go first (through the index); then, if still full, the
        # count // CULL_FREQUENCY rows that expire soonest, so "forever" rows go last.
        conn.execute(self._sql.purge_all, (_now(),))
        (entries,) = conn.execute(self._sql.count).fetchone()
        if entries >= max_entries:
            conn.execute(self._sql.cull, (entries // self._cull_frequency,))

    # -- primitives -------------------------------------------------------------
    # Each one runs between self._enter() and state.slot.leave(): see _forkgate.

    def _get(self, key: str) -> Any:
        # The hit path: _enter inlined, and this thread's own cursor (a cursor per
        # call costs a tenth of a hit). The cursor is taken out of the state while
        # in use: a call made meanwhile on this thread (a finalizer, an SQLite
        # callback) finds none and takes _get_slowly, since a cursor used by two
        # calls at once crashes the interpreter. A new thread and a fork take it too.
        try:
            state: ThreadConnection = self._local.state
        except AttributeError:
            return self._get_slowly(key)
        slot = state.slot
        slot.busy += 1  # Slot.enter(), inlined as in _enter
        reader = state.reader
        if state.pid != _forkgate.open_pid or reader is None:  # as in _enter
            slot.busy -= 1
            return self._get_slowly(key)
        state.reader = None
        try:
            now = _now()
            row = reader.execute(self._sql.read, (now, key)).fetchone()
            if row is None:
                return MISSING
            if row[0] is None:  # expired
                self._delete_expired(state.conn, [key], now)  # type: ignore[arg-type]
                return MISSING
            return row[0]
        except BaseException as exc:
            reader = state.renewed_reader(reader)
            if not _undecodable(exc):
                raise
        finally:
            state.reader = reader
            slot.busy -= 1  # Slot.leave(), inlined
        return self._leniently(self._get_slowly, key)

    def _leniently(self, read: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """``read()`` with text that is not UTF-8 read as a ``str`` (with surrogates).

        sqlite3 fails a whole fetch on such text and quotes it; no serializer reads a
        ``str``, so here the entry is unreadable like any foreign payload: a miss,
        reported once and removed, instead of an error from every read of it (which
        would make decorated calls skip the whole cache for a while).
        """
        conn = self._local.state.conn  # this thread's: the read that failed used it
        conn.text_factory = _lenient_text
        try:
            return read(*args, **kwargs)
        finally:
            conn.text_factory = str

    @_reading_any_text
    def _get_slowly(self, key: str) -> Any:
        state = self._enter()
        try:
            conn: sqlite3.Connection = state.conn  # type: ignore[assignment]  # always set
            now = _now()
            row = conn.execute(self._sql.read, (now, key)).fetchone()
            if row is None:
                return MISSING
            if row[0] is None:  # expired
                self._delete_expired(conn, [key], now)
                return MISSING
            return row[0]
        finally:
            state.slot.busy -= 1  # Slot.leave(), inlined

    @_reading_any_text
    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        if not keys:
            return {}
        now = _now()
        state = self._enter()
        try:
            conn: sqlite3.Connection = state.conn  # type: ignore[assignment]  # always set
            if len(keys) <= CHUNK:
                rows = conn.execute(self._sql.get_many_of(len(keys)), keys).fetchall()
            else:
                rows = [
                    row
                    for chunk in chunks(keys)
                    for row in conn.execute(self._sql.get_many_of(len(chunk)), chunk)
                ]
            found = {key: value for key, value, expires in rows if expires > now}
            if len(found) < len(rows):  # some expired (or a key repeated across chunks)
                expired = [key for key, _, expires in rows if expires <= now]
                if expired:
                    self._delete_expired(conn, expired, now)
        finally:
            state.slot.busy -= 1  # Slot.leave(), inlined
        return found

    @_reading_any_text
    def _get_stamped(
        self, keys: list[str], stamps: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Tier one's re-check (``memokit.backends.tiered``): ``(found, stamps seen)``;
        ``SAME`` where the row's stamp (random, new at each write) is the one held:
        one query per 250 keys sends values of the others only (``Sql.stamped``)."""
        if not keys:
            return {}, {}
        now = _now()
        found: dict[str, Any] = {}
        seen: dict[str, Any] = {}
        expired = []
        state = self._enter()
        try:
            conn: sqlite3.Connection = state.conn  # type: ignore[assignment]  # always set
            for start in range(0, len(keys), _STAMPED_CHUNK):
                chunk = keys[start : start + _STAMPED_CHUNK]
                params = [item for key in chunk for item in (key, stamps.get(key))]
                for key, expires, stamp, value in conn.execute(
                    self._sql.stamped_of(len(chunk)), params
                ):
                    if expires <= now:
                        expired.append(key)
                        continue
                    found[key] = SAME if value is None else value
                    if stamp is not None:
                        seen[key] = stamp
            if expired:
                self._delete_expired(conn, expired, now)
        finally:
            state.slot.busy -= 1  # Slot.leave(), inlined
        return found, seen

    async def _aget_stamped(
        self, keys: list[str], stamps: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The async ``_get_stamped`` (in a worker thread)."""
        return await self._run(self._get_stamped, keys, stamps)

    def _has_key(self, key: str) -> bool:
        state = self._enter()
        try:
            row = state.conn.execute(self._sql.has, (key, _now())).fetchone()  # type: ignore[union-attr]
        finally:
            state.slot.busy -= 1  # Slot.leave(), inlined
        return row is not None

    def _set(self, key: str, payload: Any, timeout: float | None) -> None:
        state = self._enter()
        try:
            conn: sqlite3.Connection = state.conn  # type: ignore[assignment]  # always set
            self._cull_if_full(conn, in_transaction=False)
            try:
                conn.execute(self._sql.upsert, (key, payload, self._expiry(timeout)))
            except sqlite3.DataError as exc:
                conn.execute(self._sql.delete, (key,))  # never leave the previous value behind
                raise too_large(exc) from None
        finally:
            state.slot.busy -= 1  # Slot.leave(), inlined

    def _set_many(self, items: dict[str, Any], timeout: float | None) -> list[str]:
        expiry = self._expiry(timeout)
        state = self._enter()
        try:
            conn: sqlite3.Connection = state.conn  # type: ignore[assignment]  # always set
            with self._transaction(conn):
                self._cull_if_full(conn, in_transaction=True)
                try:
                    conn.executemany(
                        self._sql.upsert, [(key, payload, expiry) for key, payload in items.items()]
                    )
                    return []
                except sqlite3.DataError:
                    pass  # a value too big: the statement alone failed; redo row by row
                failed = []
                for key, payload in items.items():
                    try:
                        conn.execute(self._sql.upsert, (key, payload, expiry))
                    except sqlite3.DataError:
                        conn.execute(self._sql.delete, (key,))
                        failed.append(key)
                return failed
        finally:
            state.slot.busy -= 1  # Slot.leave(), inlined

    def _add(self, key: str, payload: Any, timeout: float | None) -> bool:
        state = self._enter()
        try:
            conn: sqlite3.Connection = state.conn  # type: ignore[assignment]  # always set
            self._cull_if_full(conn, in_transaction=False)
            try:
                cursor = conn.execute(self._sql.add, (key, payload, self._expiry(timeout), _now()))
            except sqlite3.DataError as exc:
                raise too_large(exc) from None
            return cursor.rowcount == 1
        finally:
            state.slot.busy -= 1  # Slot.leave(), inlined

    def _touch(self, key: str, timeout: float | None) -> bool:
        now = _now()
        expiry = math.inf if timeout is None else now + timeout
        state = self._enter()
        try:
            cursor = state.conn.execute(self._sql.touch, (expiry, key, now))  # type: ignore[union-attr]
            return cursor.rowcount == 1
        finally:
            state.slot.busy -= 1  # Slot.leave(), inlined

    def _delete(self, key: str) -> bool:
        state = self._enter()
        try:
            rows = state.conn.execute(self._sql.delete, (key,)).fetchall()  # type: ignore[union-attr]
        finally:
            state.slot.busy -= 1  # Slot.leave(), inlined
        return bool(rows) and rows[0][0] > _now()

    def _delete_many(self, keys: list[str]) -> None:
        state = self._enter()
        try:
            conn: sqlite3.Connection = state.conn  # type: ignore[assignment]  # always set
            if len(keys) <= CHUNK:
                conn.execute(self._sql.delete_many + placeholders(len(keys)), keys)
                return
            with self._transaction(conn):
                for chunk in chunks(keys):
                    conn.execute(self._sql.delete_many + placeholders(len(chunk)), chunk)
        finally:
            state.slot.busy -= 1  # Slot.leave(), inlined

    @_reading_any_text
    def _incr(self, key: str, delta: int | float) -> Any:
        state = self._enter()
        try:
            conn: sqlite3.Connection = state.conn  # type: ignore[assignment]  # always set
            if self._raw_ints and type(delta) is int and INT64_MIN <= delta <= INT64_MAX:
                # The common case in one atomic statement; the bounds keep the sum in 64
                # bits (SQLite would turn an overflowing sum into a float). A float delta
                # would store a REAL, which _decode cannot read: it takes the path below.
                low = INT64_MIN - min(delta, 0)
                high = INT64_MAX - max(delta, 0)
                row = conn.execute(self._sql.incr, (delta, key, _now(), low, high)).fetchone()
                if row is not None:
                    return row[0]
            # A pickled number (big int, float, bool ...) or a missing key: read, add and
            # write back under the write lock, which no other process can take meanwhile.
            with self._transaction(conn):
                row = conn.execute(self._sql.get, (key,)).fetchone()
                if row is None or row[1] <= _now():
                    return MISSING
                value = self._decode(row[0]) + delta
                conn.execute(self._sql.update_value, (self._encode(value), key))
                return value
        finally:
            state.slot.busy -= 1  # Slot.leave(), inlined

    def _clear(self) -> None:
        state = self._enter()
        try:
            state.conn.execute(self._sql.clear)  # type: ignore[union-attr]
        finally:
            state.slot.busy -= 1  # Slot.leave(), inlined

    def _count(self) -> int:
        state = self._enter()
        try:
            row = state.conn.execute(self._sql.count).fetchone()  # type: ignore[union-attr]
        finally:
            state.slot.busy -= 1  # Slot.leave(), inlined
        return int(row[0]) if row is not None else 0

    def _clear_some(self, limit: int) -> int:
        state = self._enter()
        try:
            cursor = state.conn.execute(self._sql.clear_some, (limit,))  # type: ignore[union-attr]
            return int(cursor.rowcount)
        finally:
            state.slot.busy -= 1  # Slot.leave(), inlined
