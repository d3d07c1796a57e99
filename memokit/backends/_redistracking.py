"""Server-assisted invalidation on Redis: a listener told of every change to a cache's keys.

A two-tier cache keeps copies of entries in the process; on Redis it asks the
backend (``RedisCache.track_invalidations``) to be told when one of the cache's
keys changes anywhere, so that a copy is dropped within milliseconds instead of
being re-checked after a bound.

One :class:`Tracker` per backend instance holds one dedicated connection, made
from the backend's own settings (URL, password, database, TLS; for Sentinel, the
primary the sentinels name at each connection), on which it sends::

    CLIENT ID                                   -> <id>
    CLIENT TRACKING ON REDIRECT <id> BCAST PREFIX <the cache's made-key prefix>
    SUBSCRIBE __redis__:invalidate

Broadcasting mode (``BCAST``) reports every change to a key under the prefix,
whoever made it, without the connection having read the key first; the prefix
(``"<KEY_PREFIX>:"``) covers the entries and the counters (stored at version 0)
alike. Redis reports keys of every database on the server (tracking is per
server): a change to a like-named key in another database only drops a copy
for nothing.

Why RESP2 and ``SUBSCRIBE`` rather than RESP3 push messages: on a RESP2
connection subscribed to ``__redis__:invalidate`` an invalidation is an ordinary
reply (``[b"message", channel, keys or None]``) that ``read_response`` returns
with every redis-py release memokit supports and either parser; RESP3 pushes go
to handlers whose API changed across redis-py releases (8.x routes invalidation
pushes to a handler and drops them without one). The connection is made with
``protocol=2`` whatever the backend's own connections use.

A daemon thread reads it. Each message calls the listeners: keys changed
(``forget_local``), or a null invalidation (``FLUSHDB``/``FLUSHALL`` anywhere on
the server: ``forget_all_local``). A ``PING`` every third of the listeners'
``within`` checks the connection: a reply overdue by that long, an error, the
server closing the connection (``CLIENT KILL``, a restart), or, on Sentinel, the
sentinels naming another primary (asked at each heartbeat by a watcher thread)
makes the listeners lose their assistance (``assisted = False``), and the thread
connects again with a bounded backoff; once tracking is on again they are
``assisted`` again (a copy read before keeps its bound: tier one's
``vouched_since``). Losing the assistance drops nothing: a copy is
then served within the bound of when it was read, as without tracking, so a
Redis outage leaves tier one serving within its bound (fail-open). A
subscription holds its listener weakly: the thread ends once none is left.

Every wait is bounded: socket timeouts from the backend's settings, reads polled
at most every 50 ms, backoff at most :data:`MAX_BACKOFF`; ``close()`` shuts the
reader's socket down under it and joins the thread for at most
:data:`JOIN_TIMEOUT` (well under a millisecond when it is reading). In a child
after ``fork`` the inherited connection is dropped untouched, every listener
loses its assistance at once (a plain attribute store, no lock), and the thread
starts again in the child at the listener's next :meth:`Tracking.revive`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

import redis

from ._redisconf import scrub

CHANNEL: Final = b"__redis__:invalidate"
MAX_BACKOFF: Final = 1.0
"""Longest wait, in seconds, between two attempts to connect again."""
FIRST_BACKOFF: Final = 0.02
JOIN_TIMEOUT: Final = 1.0
"""Longest ``close()`` waits for the thread (a daemon: it never holds up exit)."""
_POLL: Final = 0.05
_log = logging.getLogger("memokit")


class Listener(Protocol):
    """What a tracker tells (a two-tier cache): its three hooks.

    ``assisted`` must be a plain attribute (it is set in a forked child, where a
    lock held at the fork would never be released). The hooks run on the
    tracker's thread and must not call back into the tracker.
    """

    assisted: bool

    def forget_local(self, made_keys: Iterable[str]) -> None:
        """Drop the local copies of these made keys."""

    def forget_all_local(self) -> None:
        """Drop every local copy."""


class Tracking:
    """One listener's subscription; from ``RedisCache.track_invalidations``."""

    def __init__(self, tracker: Tracker, listener: Listener, within: float) -> None:
        self._tracker = tracker
        # Weak: a listener dropped without stop() ends its subscription (the thread
        # stops when none is left), instead of living on through the backend.
        self._listener = weakref.ref(listener)
        self.within = within

    @property
    def listener(self) -> Listener | None:
        """The listener, or None once it was garbage-collected."""
        return self._listener()

    def revive(self) -> None:
        """Start tracking again if it stopped: in a forked child, or after the
        backend's ``close()``. One attribute read when it runs: call it on a path
        that reads the backend anyway (a miss, a re-check)."""
        tracker = self._tracker
        if tracker._thread is None:
            tracker._start()

    def stop(self) -> None:
        """End this subscription (the listener is not called again); the last one
        stops the thread."""
        self._tracker._unsubscribe(self)

    @property
    def vouched_until(self) -> float:
        """``time.monotonic()`` up to which every change that returned to its writer
        before ``now - within`` has reached the listener (0.0 while not tracking).

        It is the send time of the latest ``PING`` answered, plus ``within``: the
        reply comes after every invalidation the server sent before it.
        """
        return self._tracker._pong_sent + self.within if self._tracker._tracking else 0.0

    @property
    def client_id(self) -> int | None:
        """The server's id of the tracking connection, while connected (for tests)."""
        return self._tracker._client_id


_trackers: weakref.WeakSet[Tracker] = weakref.WeakSet()


def check_within(within: object) -> float:
    """``within`` as a finite positive number of seconds, or raise naming it."""
    if isinstance(within, bool) or not isinstance(within, int | float) or not 0 < within < 1e9:
        raise ValueError(
            f"within must be a positive number of seconds (the tier's bound, say 1.0), "
            f"not {within!r}"
        )
    return float(within)


def connection_factory(pool: Any) -> tuple[Callable[[], Any], Callable[[Any], bool] | None]:
    """Connections like ``pool``'s (address, credentials, database, TLS), speaking RESP2,
    without health checks (a subscribed RESP2 connection answers ``PING`` with a list)
    and without :mod:`._deadline`'s per-request deadline (the thread's reads are polls);
    and, for a Sentinel pool (whose connections ask the sentinels for the primary), a
    check that a connection is still on the primary the sentinels name."""
    cls = getattr(pool.connection_class, "plain_class", pool.connection_class)
    kwargs = {**pool.connection_kwargs, "protocol": 2, "health_check_interval": 0}

    def still_primary(conn: Any) -> bool:
        return tuple(pool.get_master_address()) == (conn.host, conn.port)

    sentinel = hasattr(pool, "get_master_address")  # redis.sentinel.SentinelConnectionPool
    return (lambda: cls(**kwargs)), (still_primary if sentinel else None)


def tracked_prefixes(key_prefix: str | None) -> tuple[str, ...]:
    """The ``BCAST PREFIX`` es of a cache whose made keys follow Django's format with
    ``key_prefix`` (``KEY_PREFIX:`` before every made key of every version, counters
    at version 0 included), or of any other key function (None: every key)."""
    return () if key_prefix is None else (key_prefix + ":",)


class Tracker:
    """The tracking connection and thread of one backend instance."""

    def __init__(
        self, pool: Any, key_prefix: str | None, display: str, secrets: tuple[str, ...]
    ) -> None:
        # An unconnected redis-py Connection (RESP2), and a check that one is still usable.
        self._connect, self._check = connection_factory(pool)
        self._prefixes = tracked_prefixes(key_prefix)
        self._display = display
        self._secrets = secrets
        self._subs: list[Tracking] = []
        self._lock = threading.Lock()  # the subscriptions and the thread
        self._notify = threading.Lock()  # one batch of listener calls at a time
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._conn: Any = None  # the connection being read (for close() to wake it)
        self._client_id: int | None = None
        self._tracking = False
        self._pong_sent = 0.0
        _trackers.add(self)

    # -- subscriptions -------------------------------------------------------------

    def subscribe(self, listener: Listener, within: float) -> Tracking:
        """Add ``listener`` and start the thread if needed; it is ``assisted`` once ready."""
        sub = Tracking(self, listener, check_within(within))
        listener.assisted = False
        with self._notify:
            with self._lock:
                self._subs.append(sub)
            if self._tracking:  # already on: every later change reaches it
                listener.assisted = True
        self._start()
        return sub

    def _unsubscribe(self, sub: Tracking) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
            last = not self._subs
        if last:
            self._halt()

    def _listeners(self) -> list[Listener]:
        with self._lock:
            live = [listener for sub in self._subs if (listener := sub.listener) is not None]
            if len(live) < len(self._subs):
                self._subs = [sub for sub in self._subs if sub.listener is not None]
            return live

    def _within(self) -> float:
        with self._lock:
            return min((sub.within for sub in self._subs), default=1.0)

    # -- the thread ----------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if (self._thread is not None and self._thread.is_alive()) or not self._subs:
                return
            self._stop = stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(stop,), name="memokit-redis-tracking", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop the thread and close the connection; every listener loses its
        assistance. Subscriptions stay: :meth:`Tracking.revive` starts it again."""
        self._halt()
        with self._notify:
            _reset(self._listeners())

    def _halt(self) -> None:
        # The reader is woken at once: its socket is shut down under it (it then
        # sees the stop flag; the connection object is left to it). A connect or
        # handshake in progress ends within the socket timeouts, the join within
        # JOIN_TIMEOUT.
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            conn = self._conn
        sock = getattr(conn, "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)

    def _in_child(self) -> None:
        # After fork, attribute stores only (a lock another thread held at the fork
        # stays held here): the parent's thread does not exist here, and its
        # connection is dropped untouched (redis-py shuts a socket down only in the
        # process that opened it). Every listener loses its assistance at once.
        for sub in list(self._subs):
            listener = sub.listener
            if listener is not None:
                listener.assisted = False
        self._lock = threading.Lock()
        self._notify = threading.Lock()
        self._thread = None
        self._conn = None
        self._client_id = None
        self._tracking = False

    def _run(self, stop: threading.Event) -> None:
        delay = FIRST_BACKOFF
        failing = False
        while not stop.is_set() and self._listeners():
            try:
                conn = self._open()
            except Exception as exc:
                # Not only RedisError and OSError: a reply or a client-library failure
                # nobody foresaw ended the thread here, and revive() starts only a
                # stopped one, so the listeners stayed unassisted for good.
                if not failing:
                    _log.warning(
                        "memokit: invalidation tracking on Redis %s cannot start (%s); "
                        "local copies are re-checked within their bound meanwhile",
                        self._display,
                        _described(exc, self._secrets),
                    )
                failing = True
                stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            if failing:
                _log.info("memokit: invalidation tracking on Redis %s is back", self._display)
            failing = False
            delay = FIRST_BACKOFF
            try:
                self._listen(conn, stop)
            except (redis.RedisError, OSError) as exc:
                if not stop.is_set():
                    _log.warning(
                        "memokit: invalidation tracking on Redis %s lost (%s); connecting again",
                        self._display,
                        scrub(exc, self._secrets),
                    )
                    failing = True
            except Exception:  # a listener's hook failed: its copies cannot be trusted
                if not stop.is_set():
                    _log.exception(
                        "memokit: a listener of invalidations on Redis %s failed", self._display
                    )
                    failing = True
            finally:
                self._drop(conn, stop)
            if not self._listeners():
                return
            stop.wait(FIRST_BACKOFF)

    def _open(self) -> Any:
        conn = self._connect()
        try:
            conn.connect()
            conn.send_command("CLIENT", "ID")
            client_id = int(conn.read_response())
            command: list[Any] = ["CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST"]
            for prefix in self._prefixes:
                command += ["PREFIX", prefix]
            conn.send_command(*command)
            conn.read_response()
            conn.send_command("SUBSCRIBE", CHANNEL)
            reply = conn.read_response()
            if not (isinstance(reply, list) and reply[:1] == [b"subscribe"]):
                raise redis.ResponseError(f"unexpected reply to SUBSCRIBE: {reply!r}")
        except BaseException:
            _shutdown(conn)
            raise
        self._client_id = client_id
        self._conn = conn
        return conn

    def _listen(self, conn: Any, stop: threading.Event) -> None:
        beat = max(self._within() / 3, 0.005)
        sent = time.monotonic()
        with self._notify:
            if stop.is_set():
                return
            # No listener stays referenced from this frame (the subscription is weak).
            _ready(self._listeners())
            self._pong_sent = sent
            self._tracking = True
        moved = threading.Event()
        done = threading.Event()
        watcher = None
        if self._check is not None:
            watcher = threading.Thread(
                target=self._watch,
                args=(self._check, conn, beat, moved, done),
                name="memokit-redis-tracking-watch",
                daemon=True,
            )
            watcher.start()
        try:
            self._read(conn, stop, beat, moved)
        finally:
            done.set()
            if watcher is not None:
                watcher.join(JOIN_TIMEOUT / 4)

    def _watch(
        self,
        check: Callable[[Any], bool],
        conn: Any,
        beat: float,
        moved: threading.Event,
        done: threading.Event,
    ) -> None:
        # Apart from the reader, so that a slow sentinel never holds up a push: a
        # demoted primary keeps its clients and reports nothing of the writes on the
        # new one, so the sentinels are asked at each heartbeat. A sentinel that
        # cannot answer counts as a move too (it could not say that none happened).
        while not done.wait(beat):
            try:
                same = check(conn)
            except Exception:  # any failure to ask ends the connection's trust
                same = False
            if not same:
                moved.set()
                return

    def _read(self, conn: Any, stop: threading.Event, beat: float, moved: threading.Event) -> None:
        waiting: float | None = None  # when the PING awaiting its reply was sent
        next_ping = time.monotonic() + beat
        while not stop.is_set():
            if moved.is_set():
                raise redis.ConnectionError("the sentinels name another primary")
            if conn.can_read(timeout=min(beat / 2, _POLL)):
                if self._dispatch(conn.read_response(), stop) and waiting is not None:
                    self._pong_sent = waiting  # every push sent before it has been handled
                    waiting = None
                continue
            now = time.monotonic()
            if waiting is not None and now - waiting > beat:
                raise redis.ConnectionError(f"no reply to PING within {beat:.3f}s")
            if waiting is None and now >= next_ping:
                if not self._listeners():
                    return  # every listener is gone: the thread ends (see _run)
                beat = max(self._within() / 3, 0.005)  # a listener may have come since
                waiting = now
                next_ping = now + beat
                conn.send_command("PING")

    def _dispatch(self, message: Any, stop: threading.Event) -> bool:
        """Handle one message; True for the reply to a PING."""
        if not isinstance(message, list) or not message:
            return False
        if message[0] == b"pong":
            return True
        if message[0] != b"message" or len(message) < 3 or message[1] != CHANNEL:
            return False  # the subscription's confirmation
        keys = message[2]
        with self._notify:
            if stop.is_set():
                return False
            listeners = self._listeners()
            if keys is None:  # FLUSHDB / FLUSHALL: every key may have changed
                for listener in listeners:
                    listener.forget_all_local()
                return False
            made = [k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k) for k in keys]
            for listener in listeners:
                listener.forget_local(made)
        return False

    def _drop(self, conn: Any, stop: threading.Event) -> None:
        # The connection is gone: no copy may be served past its bound any longer.
        with self._notify:
            was, self._tracking = self._tracking, False
            self._client_id = None
            if was:
                _reset(self._listeners())
        self._conn = None
        _shutdown(conn)


def _described(exc: Exception, secrets: tuple[str, ...]) -> str:
    """The scrubbed message of ``exc``, after its type unless it is a Redis or socket error."""
    text = scrub(exc, secrets)
    if isinstance(exc, redis.RedisError | OSError):
        return text
    return f"{type(exc).__name__}: {text}"


def _ready(listeners: list[Listener]) -> None:
    """Tracking is on: pushes vouch for what is read from now on. A listener keeps
    its copies read before on their bound (tier one's ``vouched_since``)."""
    for listener in listeners:
        listener.assisted = True


def _reset(listeners: list[Listener]) -> None:
    """Every listener loses its assistance. Its copies stay: each was read when it
    was, so the bound (re-checked from then on) covers a change whose push was
    lost; dropping them would empty tier one exactly when the backend is down."""
    for listener in listeners:
        listener.assisted = False


def _shutdown(conn: Any) -> None:
    with contextlib.suppress(Exception):  # a connection that may already be gone
        conn.disconnect()


_making = threading.Lock()  # a tracker is made once per backend instance


class TracksInvalidations:
    """The Redis backends' ``track_invalidations`` (a mixin: ``redis.py`` stays short).

    The class using it provides ``_primary`` (a client on the primary), ``_display``
    and ``_secrets``; its ``close()`` calls ``super().close()``.
    """

    _tracker: Tracker | None = None

    def track_invalidations(self, listener: Listener, *, within: float = 1.0) -> Tracking | None:
        """Tell ``listener`` of every change to this cache's keys, by any client, within
        milliseconds (Redis 6+ client tracking; docs/tiers.md); None where the deployment
        cannot. One connection and daemon thread per instance, however many listeners;
        a connection silent for ``within`` seconds counts as lost."""
        cache: Any = self
        if cache._read_from_replicas and cache._replicas:
            # A replica may answer a read made after a change's push with the old
            # value: nothing would drop that copy. The bound, re-checked on the
            # primary, applies instead.
            return None
        with _making:
            if self._tracker is None:
                plain = cache._plain_key_prefix(cache.version, 1) is not None
                prefix = cache.key_prefix if plain else None
                pool = cache._primary.connection_pool
                self._tracker = Tracker(pool, prefix, cache._display, cache._secrets)
        return self._tracker.subscribe(listener, within)

    def close(self, **kwargs: Any) -> None:
        """Stop invalidation tracking, until a listener's ``revive()``."""
        if self._tracker is not None:
            self._tracker.close()
        super().close(**kwargs)  # type: ignore[misc]  # the next class in the MRO has it


def _after_fork_in_child() -> None:
    global _making
    _making = threading.Lock()  # another thread may have held it at the fork
    for tracker in list(_trackers):
        tracker._in_child()


if hasattr(os, "register_at_fork"):  # POSIX; there is no fork on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)
