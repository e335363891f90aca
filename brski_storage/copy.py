"""Copy a store from SQLite to PostgreSQL, byte for byte, in one transaction.

What an operator runs when a registrar or a MASA outgrows its SQLite file
(``brski registrar|masa store copy --to postgresql://...``):

1. both ends are opened through the stores, which migrates each to the
   schema version of this software, so they have the same tables;
2. the target must be empty: a copy never merges into live data;
3. in ONE PostgreSQL transaction, holding the event-chain head row locked
   (so a server already pointed at the target cannot write meanwhile),
   every table is streamed with COPY in foreign-key order, ids included,
   from one SQLite read snapshot; identity sequences are moved past the
   copied ids and the chain head takes the source's last issued event id
   and hash (so a tail already cut from the source still shows as cut);
4. after COMMIT, the caller re-walks the event chain on the target
   (:func:`brski_storage.base.EventLog.verify_event_chain`) and compares it
   and the row counts with the source.

Timestamps, hashes and JSON details are copied as stored, so every event
hash computed on SQLite verifies unchanged on PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from brski.errors import BrskiError, Conflict, StorageError
from brski_storage.chain import GENESIS

__all__ = ["CopyReport", "copy_sqlite_to_postgres", "table_counts"]

# Bookkeeping each engine keeps for itself: never copied.
_SKIP = frozenset({"schema_migrations", "sqlite_sequence", "event_chain_head"})


@dataclass(frozen=True, kw_only=True)
class CopyReport:
    tables: dict[str, int] = field(default_factory=dict)
    last_event_id: int = 0


def _sqlite_tables(src: sqlite3.Connection) -> list[str]:
    """User tables, parents before children (foreign keys), then by name."""
    names = sorted(
        r[0] for r in src.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        if r[0] not in _SKIP
    )
    parents = {
        t: {str(fk[2]) for fk in src.execute(f'PRAGMA foreign_key_list("{t}")')} - {t}
        for t in names
    }
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [t for t in names if t not in ordered and parents[t] <= set(ordered)]
        if not ready:
            raise StorageError("foreign keys form a cycle; cannot order the copy", check="storage.copy")
        ordered.extend(ready)
    return ordered


def _columns_sqlite(src: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in src.execute(f'PRAGMA table_info("{table}")')]


def _columns_pg(dst: psycopg.Connection[tuple[Any, ...]], table: str) -> list[str]:
    rows = dst.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def table_counts(url: str) -> dict[str, int]:
    """Rows per store table (bookkeeping excluded), on either engine."""
    if url.startswith("sqlite:///"):
        from brski_storage.sqlite import sqlite_path_from_url

        src = sqlite3.connect(f"file:{sqlite_path_from_url(url).resolve()}?mode=ro", uri=True)
        try:
            return {t: int(src.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in _sqlite_tables(src)}
        finally:
            src.close()
    with psycopg.connect(url) as dst:
        names = [
            str(r[0]) for r in dst.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            )
            if r[0] not in _SKIP
        ]
        out: dict[str, int] = {}
        for t in sorted(names):
            row = dst.execute(f'SELECT count(*) FROM "{t}"'.encode()).fetchone()
            out[t] = int(row[0]) if row is not None else 0
        return out


def _without_rowid(src: sqlite3.Connection, table: str) -> bool:
    row = src.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return row is not None and "WITHOUT ROWID" in str(row[0]).upper()


def copy_sqlite_to_postgres(source: Path, target_url: str) -> CopyReport:
    """Copy every row of the (migrated) SQLite store at ``source`` into the
    (migrated, empty) PostgreSQL store at ``target_url``; see the module doc."""
    src = sqlite3.connect(f"file:{source.resolve()}?mode=ro", uri=True, isolation_level=None)
    try:
        src.execute("BEGIN")  # one read snapshot for the whole copy
        tables = _sqlite_tables(src)
        seq = src.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        last = src.execute("SELECT id, hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
        counts: dict[str, int] = {}
        with psycopg.connect(target_url, autocommit=True) as dst, dst.transaction():
            head = dst.execute("SELECT last_id FROM event_chain_head FOR UPDATE").fetchone()
            if head is None or head[0]:
                raise Conflict("the target already has events: copy into an empty store only",
                               check="storage.copy-target-not-empty")
            for table in tables:
                cols = _columns_sqlite(src, table)
                pg_cols = _columns_pg(dst, table)
                if sorted(cols) != sorted(pg_cols):
                    raise StorageError(
                        f"table {table}: columns differ between the engines "
                        f"({sorted(set(cols) ^ set(pg_cols))}); is a PostgreSQL migration missing?",
                        check="storage.copy-schema",
                    )
                existing = dst.execute(f'SELECT count(*) FROM "{table}"'.encode()).fetchone()
                if existing is not None and existing[0]:
                    raise Conflict(f"the target's {table} is not empty: copy into an empty store only",
                                   check="storage.copy-target-not-empty")
                col_list = ", ".join(f'"{c}"' for c in cols)
                n = 0
                # Insertion order where the table has one (a WITHOUT ROWID table
                # has none to keep: its primary key orders it).
                order = "" if _without_rowid(src, table) else " ORDER BY rowid"
                with dst.cursor().copy(f'COPY "{table}" ({col_list}) FROM STDIN'.encode()) as copy:
                    for row in src.execute(f'SELECT {col_list} FROM "{table}"{order}'):
                        copy.write_row(row)
                        n += 1
                counts[table] = n
                if "id" in cols and table != "events":
                    dst.execute(
                        f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'),"
                        f' coalesce(max(id), 1), max(id) IS NOT NULL) FROM "{table}"'.encode()
                    )
            last_id = max(int(seq[0]) if seq is not None else 0, int(last[0]) if last is not None else 0)
            last_hash = bytes(last[1]) if last is not None else GENESIS
            dst.execute("UPDATE event_chain_head SET last_id = %s, last_hash = %s", (last_id, last_hash))
        return CopyReport(tables=counts, last_event_id=last_id)
    except BrskiError:
        raise
    except (sqlite3.Error, psycopg.Error) as exc:
        raise StorageError(f"copy failed (nothing was written): {exc}", check="storage.copy") from exc
    finally:
        src.close()
