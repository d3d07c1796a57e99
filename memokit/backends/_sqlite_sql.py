"""The sqlite backend's SQL: the table name checked, every statement written once.

Values are always bound parameters; SQL text is built only from the table name,
passed through ``quote`` (an identifier, quotes doubled).
"""

# ruff: noqa: S608 - see the module docstring

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from ..exceptions import ImproperlyConfigured, ValueTooLarge

CHUNK = 500  # keys per IN (...) list, well under SQLite's bound-parameter limit

# The names memokit gives its helper objects: TABLE + suffix (see Sql.schema).
HELPER_SUFFIXES = ("__meta", "__expires", "__inserted", "__deleted", "__stamped")

COLUMNS = ["key", "value", "expires", "stamp"]
"""The table's columns; a table made before ``stamp`` existed gets it added (NULL)."""


def check_table(table: object) -> None:
    """Refuse a TABLE that SQLite reserves or that could be another table's helper."""
    example = "for example OPTIONS={'TABLE': 'memokit_cache'}"
    if not isinstance(table, str) or not table or "\x00" in table:
        raise ImproperlyConfigured(
            f"TABLE must be a non-empty str without NUL characters, not {table!r}; {example}"
        )
    if table.lower().startswith("sqlite_"):
        raise ImproperlyConfigured(
            f"TABLE {table!r} starts with 'sqlite_', which SQLite reserves for its own "
            f"tables; choose another name, {example}"
        )
    for suffix in HELPER_SUFFIXES:
        if table.endswith(suffix):
            raise ImproperlyConfigured(
                f"TABLE {table!r} ends with {suffix!r}, which memokit reserves for the helper "
                f"objects of table {table[: -len(suffix)]!r} (several tables can share one "
                f"file); choose a name without it, {example}"
            )


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Sql:
    """Every statement for one table, written once; values are always parameters."""

    def __init__(self, table: str) -> None:
        t = quote(table)
        meta = quote(table + "__meta")
        self.schema = [
            f"CREATE TABLE IF NOT EXISTS {t} "
            f"(key TEXT NOT NULL PRIMARY KEY, value BLOB NOT NULL, expires REAL NOT NULL, "
            f"stamp INTEGER) WITHOUT ROWID",
            f"CREATE INDEX IF NOT EXISTS {quote(table + '__expires')} ON {t} (expires)",
            f"CREATE TABLE IF NOT EXISTS {meta} "
            f"(id INTEGER PRIMARY KEY CHECK (id = 0), entries INTEGER NOT NULL)",
            f"INSERT OR IGNORE INTO {meta} (id, entries) VALUES (0, (SELECT COUNT(*) FROM {t}))",
            f"CREATE TRIGGER IF NOT EXISTS {quote(table + '__inserted')} AFTER INSERT ON {t} "
            f"BEGIN UPDATE {meta} SET entries = entries + 1; END",
            f"CREATE TRIGGER IF NOT EXISTS {quote(table + '__deleted')} AFTER DELETE ON {t} "
            f"BEGIN UPDATE {meta} SET entries = entries - 1; END",
            # Every memokit write sets a new random stamp (what tier one re-checks); a
            # writer that does not (a memokit from before stamps, on the same file)
            # leaves it unchanged, so the trigger clears it: the value is read again.
            f"CREATE TRIGGER IF NOT EXISTS {quote(table + '__stamped')} AFTER UPDATE OF value "
            f"ON {t} WHEN NEW.stamp IS OLD.stamp "
            f"BEGIN UPDATE {t} SET stamp = NULL WHERE key = NEW.key; END",
        ]
        self.add_stamp = f"ALTER TABLE {t} ADD COLUMN stamp INTEGER"
        self.schema_names = [
            table,
            table + "__expires",
            table + "__meta",
            table + "__inserted",
            table + "__deleted",
            table + "__stamped",
        ]
        self.count = f"SELECT entries FROM {meta}"
        self.recount = f"UPDATE {meta} SET entries = (SELECT COUNT(*) FROM {t}) RETURNING entries"
        self.get = f"SELECT value, expires FROM {t} WHERE key = ?"
        # The hit path's read, given (now, key): one column, which costs less to fetch
        # than two (a tenth of a hit): the value if live, NULL if expired (value is
        # never NULL), no row if absent.
        self.read = f"SELECT CASE WHEN expires > ? THEN value END FROM {t} WHERE key = ?"
        self.has = f"SELECT 1 FROM {t} WHERE key = ? AND expires > ?"
        self.get_many = f"SELECT key, value, expires FROM {t} WHERE key IN "
        self.upsert = (
            f"INSERT INTO {t} (key, value, expires, stamp) VALUES (?, ?, ?, random()) "
            f"ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            f"expires = excluded.expires, stamp = excluded.stamp"
        )
        # One statement: it stores only when the row is absent or expired.
        self.add = self.upsert + f" WHERE {t}.expires <= ?"
        self.touch = f"UPDATE {t} SET expires = ? WHERE key = ? AND expires > ?"
        self.delete = f"DELETE FROM {t} WHERE key = ? RETURNING expires"
        self.delete_many = f"DELETE FROM {t} WHERE key IN "
        self.delete_expired_key = f"DELETE FROM {t} WHERE key = ? AND expires <= ?"
        self.delete_expired_keys = f"DELETE FROM {t} WHERE expires <= ? AND key IN "
        self.incr = (
            f"UPDATE {t} SET value = value + ?, stamp = random() WHERE key = ? AND expires > ? "
            f"AND typeof(value) = 'integer' AND value BETWEEN ? AND ? RETURNING value"
        )
        self.update_value = f"UPDATE {t} SET value = ?, stamp = random() WHERE key = ?"
        # Tier one's re-check: per key, its stamp and expiry, and its value only where
        # the stamp is not the one held (value is never NULL: NULL means unchanged).
        self.stamped = (
            f"SELECT t.key, t.expires, t.stamp, CASE WHEN t.stamp = held.s THEN NULL "
            f"ELSE t.value END FROM held JOIN {t} AS t ON t.key = held.k"
        )
        self.purge = (
            f"DELETE FROM {t} WHERE key IN (SELECT key FROM {t} WHERE expires <= ? LIMIT ?)"
        )
        self.purge_all = f"DELETE FROM {t} WHERE expires <= ?"
        self.cull = f"DELETE FROM {t} WHERE key IN (SELECT key FROM {t} ORDER BY expires LIMIT ?)"
        self.clear = f"DELETE FROM {t}"
        self.clear_some = f"DELETE FROM {t} WHERE key IN (SELECT key FROM {t} LIMIT ?)"
        self._get_many_of: dict[int, str] = {}

    def stamped_of(self, n: int) -> str:
        """``stamped`` for ``n`` keys, each given as a (key, stamp held) pair."""
        return f"WITH held(k, s) AS (VALUES {','.join(['(?, ?)'] * n)}) {self.stamped}"

    def get_many_of(self, n: int) -> str:
        """``get_many`` for ``n`` keys: one string per ``n``, so that sqlite3's statement
        cache finds it by a hash computed once (``n`` is at most ``CHUNK``)."""
        sql = self._get_many_of.get(n)
        if sql is None:
            sql = self._get_many_of[n] = self.get_many + placeholders(n)
        return sql


def too_large(exc: sqlite3.DataError) -> ValueTooLarge:
    # SQLite's message ("string or blob too big") never quotes the value.
    return ValueTooLarge(f"SQLite refused it ({exc}; see SQLITE_LIMIT_LENGTH)")


def placeholders(n: int) -> str:
    return "(" + ",".join("?" * n) + ")"


def chunks(keys: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(keys), CHUNK):
        yield keys[start : start + CHUNK]
